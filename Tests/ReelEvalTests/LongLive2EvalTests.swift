import Foundation
import Testing
import ReelCore
import ReelCPU
import ReelIO
import ReelMedia
import ReelModels
import ReelPipeline
@testable import ReelEval

/// `reel eval` on a LongLive 2.0 model (random weights of `ModelFolderFixtures.longLive2Folder`'s shapes: a DiT of 48
/// latent channels, the Wan2.2 VAE at widths 4 / 8): its blocks of 8 latent frames (29 video frames, then 32) are
/// handed on as the eval's blocks of 9 and 12, and a switch starts at the model's block at or after the plan's.
/// The figures mean nothing (nothing is trained).
@Suite struct LongLive2EvalTests {
    func model() throws -> LoadedModel {
        let backend = CPUBackend(threads: 2)
        let tok = try Tokenizer(contentsOf: ModelEvalTests.fixtures.appendingPathComponent("tokenizer/nfkc/tokenizer.json"))
        let t5 = try UMT5Encoder.load(
            from: UMT5Encoder.randomWeights(UMT5Config(vocabulary: tok.vocabularySize, dim: 16, heads: 2, headDim: 8, ffnDim: 32, layers: 1),
                                            on: backend), backend: backend)
        let config = WanDiTConfig(dim: 64, ffnDim: 128, heads: 2, layers: 2, inChannels: 48, outChannels: 48, textDim: 16)
        let dit = try WanDiT.load(from: WanDiT.randomWeights(config, on: backend, seed: 11), heads: 2, backend: backend)
        var vae = WanVAEConfig.wan22
        vae.baseDim = 4
        vae.decoderBaseDim = 8
        let decoder = UncheckedSendable(try WanVAEDecoder.load(from: WanVAEDecoder.randomWeights(vae, on: backend, seed: 12),
                                                                on: backend, config: vae))
        return LoadedModel(prompts: try PromptEncoder(tokenizer: tok, textEncoder: t5, model: dit), decoderName: "wan2.2-vae") {
            StreamingVAEDecoder(model: decoder.value)
        }
    }

    @Test func evalRunsOnALongLive2ModelInThePlansBlocks() async throws {
        var options = EvalOptions()
        options.prompts = 1
        options.blocksPerPrompt = 3      // 33 frames: one block of 2.0 (29), then 4 of its next 32
        options.switches = 1
        options.switchBlock = 8          // latent frame 24: the start of 2.0's block 3
        options.blocksFromSwitch = 1
        options.longFrames = 0
        let model = try model()
        let source = try ModelFrameSource(model: model, frameSize: 128, summary: "random LongLive 2.0 model")
        #expect(source.geometry.latentFramesPerBlock == 8 && source.geometry.spatialStride == 16)
        // The DiT and the decoder run on the pipeline's own threads; the analysis is light (as ModelEvalTests).
        let report = try await EvalRunner(source: source, options: options).run()
        #expect(report.frames == 33 + 105 && report.source == "random LongLive 2.0 model")
        #expect(try #require(report.adherence).rates.first { $0.attribute == .colour }?.judged == 33)
        let s = try #require(report.switches)
        #expect(s.results.count == 1 && s.results[0].switchFrame == 93)
        // A size the model cannot make (not a multiple of 32) is refused when the source is made.
        #expect(throws: ReelError.self) { try ModelFrameSource(model: model, frameSize: 48, summary: "") }
    }

    @Test func framesAreThePipelinesCutIntoThePlansBlocksWithTheSwitchAtTheModelsBlock() async throws {
        let model = try model()
        let source = try ModelFrameSource(model: model, frameSize: 64, summary: "")
        let (s, t) = (scene("a red circle moves left on a blue background"), scene("a green square moves right on a blue background"))
        // Switches at plan blocks 4 (latent frame 12, inside 2.0's block 1: it starts at block 2, latent 16) and 8 (24).
        let plan = VideoPlan(scenes: [s, t, s], switchBlocks: [4, 8], blocks: 9, seed: 7, frameSize: 64)
        #expect([0, 8, 12, 16, 23, 24].map { plan.promptIndex(atLatentFrame: $0) } == [0, 0, 1, 1, 1, 2])
        var counts: [Int] = [], pixels: [UInt8] = []
        try await source.generate(plan) { counts.append($0.count); pixels += $0.pixels }
        #expect(counts == [9] + Array(repeating: 12, count: 8))

        /// The pipeline run directly, all its frames: `switches` maps latent frames to prompt indices.
        func direct(_ switches: [Int: Int]) async throws -> [UInt8] {
            let contexts = UncheckedSendable(try plan.prompts.map { try model.context(for: $0) })
            let pipeline = try Pipeline(model: model, request: PipelineRequest(geometry: source.geometry, latentFrames: 27),
                                        prompt: contexts.value[0], noise: PhiloxNoise(seed: 7)) { frame in
                switches[frame].map { contexts.value[$0] }
            }
            var out: [UInt8] = []
            for try await chunk in pipeline.chunks() { out += try #require(chunk.frames).pixels }
            return out
        }
        let frameBytes = 64 * 64 * 3
        let switched = try await direct([16: 1, 24: 2])
        #expect(switched.count == 125 * frameBytes)
        #expect(pixels == Array(switched.prefix(105 * frameBytes)), "the plan's frames are the pipeline's, switching at latent 16 and 24")
        // Negative control: switching at the plan's own latent frame 12 is not possible in 2.0's blocks; without the
        // first switch the frames differ from 2.0's block 2 (video frame 61) on.
        let once = try await direct([24: 2])
        #expect(Array(once.prefix(61 * frameBytes)) == Array(pixels.prefix(61 * frameBytes)))
        #expect(Array(once[(61 * frameBytes)..<(105 * frameBytes)]) != Array(pixels[(61 * frameBytes)...]))
    }
}
