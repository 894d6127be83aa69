import Foundation
import ReelCore
import ReelCPU
import ReelIO
@testable import ReelModels
import Testing
@testable import ReelPipeline

/// A DiT file may record the cross-attention's row count (`text_len`; Wan's is 512, the tiny model's 32):
/// Reel reads it, and prompts longer than it are cut as Wan cuts at 512 (the last id, `</s>`, kept).
@Suite struct TextLengthTests {
    let backend = CPUBackend(threads: 1, gemm: .own)   // embeddings compared bit for bit
    let config = WanDiTConfig(dim: 32, ffnDim: 64, heads: 2, layers: 1, textDim: 16)

    func ditFile(metadata: [String: String]) throws -> String {
        let source = try WanDiT.randomWeights(config, on: backend, seed: 3)
        var writer = SafetensorsWriter()
        for key in source.keys { try writer.add(key, try source.load(key, on: backend, as: nil)) }
        writer.metadata = metadata
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("reel-textlen-\(UUID().uuidString).safetensors").path
        try writer.write(to: path)
        return path
    }

    @Test func theRecordedTextLengthIsRead() throws {
        let recorded = try ditFile(metadata: ["heads": "2", "text_len": "8"])
        let plain = try ditFile(metadata: ["heads": "2"])
        defer { try? FileManager.default.removeItem(atPath: recorded); try? FileManager.default.removeItem(atPath: plain) }
        #expect(try WanDiT.load(path: recorded, backend: backend).config.textLength == 8)
        #expect(try WanDiT.load(path: plain, backend: backend).config.textLength == 512)
    }

    @Test func aBadTextLengthIsRefused() throws {
        for bad in ["0", "-3", "many"] {
            let path = try ditFile(metadata: ["heads": "2", "text_len": bad])
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect(throws: ReelError.self) { try WanDiT.load(path: path, backend: backend) }
        }
    }

    /// 12 ids into a DiT of 8 text rows: the encoder sees the first 7 and `</s>`, and the context has
    /// 8 rows (without the cut, the DiT refuses a prompt longer than its rows).
    @Test func longPromptsAreCutKeepingTheEnd() throws {
        struct Fixed: PromptTokenizer {
            let ids: [Int32]
            func ids(for text: String) throws -> [Int32] { ids }
        }
        let path = try ditFile(metadata: ["heads": "2", "text_len": "8"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let dit = try WanDiT.load(path: path, backend: backend)
        let t5 = try UMT5Encoder.load(from: UMT5Encoder.randomWeights(UMT5Config(vocabulary: 40, dim: 16, heads: 2, headDim: 8,
                                                                                    ffnDim: 32, layers: 1), on: backend),
                                      backend: backend)
        let ids: [Int32] = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 1]
        let prompts = try PromptEncoder(tokenizer: Fixed(ids: ids), textEncoder: t5, model: dit)
        let embedding = try prompts.embedding(for: "a long prompt")
        #expect(embedding.shape == [8, 16])
        let expected = try t5.encode(Array(ids.prefix(7)) + [1])
        #expect(try embedding.toFloats() == expected.toFloats())
        _ = try prompts.context(for: "a long prompt")
        #expect(throws: ReelError.self) { try dit.encodePrompt(try t5.encode(ids)) }
    }

    /// `--text-backend cpu`: the text encoder on a backend of its own (another CPU backend here, standing for the CPU
    /// beside a GPU DiT). The embedding arrives on the DiT's backend in the DiT's dtype, and the context is the one the
    /// encoder on the DiT's own backend makes, bit for bit.
    @Test func theTextEncoderMayRunOnABackendOfItsOwn() throws {
        struct Fixed: PromptTokenizer {
            func ids(for text: String) throws -> [Int32] { [5, 6, 7, 1] }
        }
        let path = try ditFile(metadata: ["heads": "2", "text_len": "8"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let dit = try WanDiT.load(path: path, backend: backend)
        let t5Weights = try UMT5Encoder.randomWeights(UMT5Config(vocabulary: 40, dim: 16, heads: 2, headDim: 8, ffnDim: 32, layers: 1),
                                                      on: backend)
        let other = CPUBackend(threads: 1, gemm: .own)
        let here = try PromptEncoder(tokenizer: Fixed(), textEncoder: try UMT5Encoder.load(from: t5Weights, backend: backend), model: dit)
        let apart = try PromptEncoder(tokenizer: Fixed(), textEncoder: try UMT5Encoder.load(from: t5Weights, backend: other), model: dit)
        let e = try apart.embedding(for: "a cat")
        #expect(e.backend === backend && e.dtype == dit.dtype)
        #expect(apart.textEncoderRuns == 1 && (apart.lastEncodeSeconds ?? -1) >= 0)
        #expect(try e.toFloats() == here.embedding(for: "a cat").toFloats())
        let (a, b) = (try apart.context(for: "a cat"), try here.context(for: "a cat"))
        #expect(try a.crossKV[0].keys.toFloats() == b.crossKV[0].keys.toFloats())
        #expect(try a.crossKV[0].values.toFloats() == b.crossKV[0].values.toFloats())
    }
}
