import Foundation
import Testing
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
import ReelPipeline
@testable import ReelEval

/// `reel eval` end to end on a micro model with random weights of the real architectures (tokenizer ->
/// umT5 -> causal DiT with KV cache and recache -> TAEHV decoder) at the tiny model's 128 x 128: every
/// part runs and counts what it should. The figures themselves mean nothing (nothing is trained).
@Suite struct ModelEvalTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ReelModelsTests/Fixtures")

    func model(decoder: Bool = true) throws -> LoadedModel {
        let backend = CPUBackend(threads: 2)
        let tok = try Tokenizer(contentsOf: Self.fixtures.appendingPathComponent("tokenizer/nfkc/tokenizer.json"))
        let t5 = try UMT5Encoder.load(
            from: UMT5Encoder.randomWeights(UMT5Config(vocabulary: tok.vocabularySize, dim: 16, heads: 2, headDim: 8, ffnDim: 32, layers: 1),
                                            on: backend), backend: backend)
        let dit = try WanDiT.load(from: WanDiT.randomWeights(WanDiTConfig(dim: 32, ffnDim: 64, heads: 2, layers: 2, textDim: 16), on: backend),
                                  heads: 2, backend: backend)
        let prompts = try PromptEncoder(tokenizer: tok, textEncoder: t5, model: dit)
        guard decoder else { return LoadedModel(prompts: prompts, decoderName: "none", makeDecoder: nil) }
        let taehv = FilteredTensorSource(try WeightFileTensors(path: Self.fixtures.appendingPathComponent("vae/taehv_decoder.safetensors").path),
                                         excluding: ["input.", "output."])
        let weights = UncheckedSendable(try TinyDecoder.load(from: taehv, on: backend))
        return LoadedModel(prompts: prompts, decoderName: "taehv") { StreamingTinyDecoder(model: weights.value) }
    }

    @Test func runsEveryPartOnAModelsFrames() async throws {
        var options = EvalOptions()
        options.prompts = 1
        options.blocksPerPrompt = 2
        options.switches = 1
        options.switchBlock = 1
        options.blocksFromSwitch = 1
        options.longFrames = 21
        options.windowBlocks = 1
        var lines: [String] = []
        let source = try ModelFrameSource(model: try model(), frameSize: 128, summary: "random micro model")
        let report = try await EvalRunner(source: source, options: options) { lines.append($0) }.run()
        #expect(report.frames == 3 * 21 && report.source == "random micro model")
        let a = try #require(report.adherence)
        #expect(a.rates.first { $0.attribute == .colour }?.judged == 21)
        #expect(a.rates.first { $0.attribute == .motion }?.judged == 2)
        let s = try #require(report.switches)
        #expect(s.results.count == 1 && s.results[0].followed.count == 1 && s.results[0].switchFrame == 9)
        let l = try #require(report.longRun)
        #expect(l.windows.map(\.frames) == [9, 12] && l.windows.allSatisfy { $0.sharpness.isFinite })
        #expect(lines.contains { $0.hasPrefix("adherence 1/1") } && lines.contains { $0.hasPrefix("switch 1/1") }
                && lines.contains { $0.hasPrefix("long run: block 2/2") })
        #expect(report.table.contains("Long run"))
    }

    @Test func aModelWithoutADecoderIsRefused() throws {
        #expect(throws: ReelError.self) { try ModelFrameSource(model: try model(decoder: false), frameSize: 128, summary: "") }
    }

    @Test func switchesReachTheGeneratorAtTheirBlock() {
        let s = scene("a red circle moves left on a blue background"), t = scene("a red square moves left on a blue background")
        let plan = VideoPlan(scenes: [s, t, s], switchBlocks: [2, 5], blocks: 7, seed: 0, frameSize: 128)
        #expect((0..<7).map { plan.promptStarting(atLatentFrame: 3 * $0) } == [nil, nil, 1, nil, nil, 2, nil])
        #expect(plan.timeline.segments.map(\.start) == [0, 21, 57] && plan.frames == 81)
    }
}
