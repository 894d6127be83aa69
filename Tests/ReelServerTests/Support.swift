import Foundation
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
import ReelPipeline
@testable import ReelServer

/// A micro model with random weights of the real architectures (as VideoStreamTests builds it):
/// milliseconds per block on CPU, frames of 48x32.
enum TestModel {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ReelModelsTests/Fixtures")
    nonisolated(unsafe) private static var cached: LoadedModel?
    private static let lock = NSLock()

    static func load() throws -> LoadedModel {
        try lock.withLock {
            if let cached { return cached }
            // Reel's own GEMM: sessions are compared frame for frame (alone against beside another), which must
            // not rest on a run-time BLAS rounding the same in both.
            let model = try make(on: CPUBackend(threads: 1, gemm: .own))
            cached = model
            return model
        }
    }

    /// The micro model on `backend` (the same weights on every backend).
    static func make(on backend: CPUBackend) throws -> LoadedModel { try make(on: backend, communicator: nil) }

    /// The micro model with its DiT spread over `communicator`'s ranks by sequence parallelism (2 heads: 1 or 2
    /// ranks), the rest on rank 0: a `reel serve --session-devices 0+1` engine.
    static func make(spreadOver communicator: CPUCommunicator) throws -> LoadedModel {
        try make(on: communicator.streams[0] as! CPUBackend, communicator: communicator)
    }

    private static func make(on backend: CPUBackend, communicator: CPUCommunicator?) throws -> LoadedModel {
        let tok = try Tokenizer(contentsOf: fixtures.appendingPathComponent("tokenizer/nfkc/tokenizer.json"))
        let t5 = try UMT5Encoder.load(
            from: UMT5Encoder.randomWeights(UMT5Config(vocabulary: tok.vocabularySize, dim: 16, heads: 2, headDim: 8, ffnDim: 32, layers: 1),
                                            on: backend), backend: backend)
        let weights = try WanDiT.randomWeights(WanDiTConfig(dim: 32, ffnDim: 64, heads: 2, layers: 2, textDim: 16), on: backend, seed: 1)
        let dit = try communicator.map { try WanDiT.loadSequenceParallel(from: weights, heads: 2, communicator: $0) }
            ?? WanDiT.load(from: weights, heads: 2, backend: backend)
        let taehv = FilteredTensorSource(try WeightFileTensors(path: fixtures.appendingPathComponent("vae/taehv_decoder.safetensors").path),
                                         excluding: ["input.", "output."])
        let decoder = UncheckedSendable(try TinyDecoder.load(from: taehv, on: backend))
        // A random-weights TAEHV encoder of the decoder's 16 latent channels: sessions take inputs.
        let encoder = UncheckedSendable(try TinyEncoder.load(from: TinyEncoder.randomWeights(channels: 8, on: backend, seed: 6), on: backend))
        return LoadedModel(prompts: try PromptEncoder(tokenizer: tok, textEncoder: t5, model: dit), decoderName: "taehv",
                           makeEncoder: { StreamingTAEHVEncoder(model: encoder.value) }) {
            StreamingTinyDecoder(model: decoder.value)
        }
    }

    /// The micro model without its encoder (a server that takes prompts only).
    static func withoutEncoder() throws -> LoadedModel {
        let model = try load()
        return LoadedModel(prompts: model.prompts, decoderName: "taehv") { model.newDecoder()! }
    }

    /// The shipped tiny model (`Models/tiny`), on two CPU threads; `encoder`: with its TAEHV encoder.
    static func tiny(encoder: Bool = false) throws -> LoadedModel {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let files = try ModelFiles(folder: root.appendingPathComponent("Models/tiny").path)
        return try LoadedModel.load(files: files, encoder: encoder, backend: CPUBackend(threads: 2))
    }

    static func config(_ edit: (inout ServerConfiguration) -> Void = { _ in }) -> ServerConfiguration {
        var c = ServerConfiguration(recordingFolder: NSTemporaryDirectory() + "reel-serve-test-\(UUID().uuidString)")
        c.defaultWidth = 48
        c.defaultHeight = 32
        c.playbackLead = .seconds(1000)   // no real-time pacing in tests
        edit(&c)
        return c
    }

    static func server(_ edit: (inout ServerConfiguration) -> Void = { _ in }) throws -> ReelServer {
        try ReelServer(manager: SessionManager(model: try load(), config: config(edit)))
    }
}

/// Polls `condition` until it holds or `seconds` pass. A ceiling for a condition that does not come, never a timing:
/// `swift test` starts every test of the run at once, so the cooperative pool (one thread a core, two on a 2-core
/// machine) holds a queue of other tests' synchronous work, and a session's next step waits its turn behind it -
/// minutes at the start of a full run (60 s was seen to run out).
func eventually(_ seconds: Double = 600, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}
