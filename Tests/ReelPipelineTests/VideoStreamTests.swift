import Foundation
import Testing
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
@testable import ReelPipeline

/// The whole path on a micro model with random weights of the real architectures: tokenizer ->
/// umT5 -> causal DiT with cache and recache -> TAEHV decoder -> frames, overlapped block by block.
@Suite struct VideoStreamTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ReelModelsTests/Fixtures")
    /// Reel's own GEMM: these tests compare videos bit for bit between computations whose GEMM row counts
    /// differ (a latent frame against a block, warm-up or not); a run-time BLAS may pick its kernel by the row
    /// count and round differently (OpenBLAS with OPENBLAS_CORETYPE=Haswell does).
    let backend = CPUBackend(gemm: .own)
    static let ditConfig = WanDiTConfig(dim: 32, ffnDim: 64, heads: 2, layers: 2, textDim: 16)

    func makeParts(seed: UInt64 = 1) throws -> (PromptEncoder, any VideoDecoder) {
        let tok = try Tokenizer(contentsOf: Self.fixtures.appendingPathComponent("tokenizer/nfkc/tokenizer.json"))
        let t5 = try UMT5Encoder.load(
            from: UMT5Encoder.randomWeights(UMT5Config(vocabulary: tok.vocabularySize, dim: 16, heads: 2, headDim: 8, ffnDim: 32, layers: 1),
                                            on: backend), backend: backend)
        let dit = try WanDiT.load(from: WanDiT.randomWeights(Self.ditConfig, on: backend, seed: seed), heads: 2, backend: backend)
        let taehv = FilteredTensorSource(try WeightFileTensors(path: Self.fixtures.appendingPathComponent("vae/taehv_decoder.safetensors").path),
                                         excluding: ["input.", "output."])
        let decoder = StreamingTinyDecoder(model: try TinyDecoder.load(from: taehv, on: backend))
        return (try PromptEncoder(tokenizer: tok, textEncoder: t5, model: dit), decoder)
    }

    func run(latentFrames: Int, seed: UInt64, switchAt: Int? = nil, granularity: VideoStream.Granularity = .block,
             warmUp: Bool = false) async throws -> (frames: [RGBFrames], prompts: [Int]) {
        let (prompts, decoder) = try makeParts()
        let first = try prompts.context(for: "a red circle moves left on a blue background")
        let other = try prompts.context(for: "a green square bounces")
        if warmUp {
            try await EngineWarmUp.run(dit: prompts.model, prompt: other, switchTo: first, decoder: decoder, decodeStream: backend,
                                       latentHeight: 4, latentWidth: 6)
        }
        let generator = try StreamingGenerator(model: prompts.model, prompt: first, latentHeight: 4, latentWidth: 6,
                                               noise: PhiloxNoise(seed: seed))
        let stream = VideoStream(generator: generator, decoder: decoder)
        var frames: [RGBFrames] = [], promptIndices: [Int] = []
        for try await chunk in stream.chunks(latentFrames: latentFrames, granularity: granularity, prompt: { frame in
            frame == switchAt ? .switchTo(other) : .keep
        }) {
            frames.append(try #require(chunk.frames))
            promptIndices.append(chunk.block.promptIndex)
        }
        return (frames, promptIndices)
    }

    @Test func framesArriveBlockByBlockWithTheRightCounts() async throws {
        let (frames, prompts) = try await run(latentFrames: 12, seed: 3, switchAt: 6)
        // TAEHV and the Wan VAE: latent 0 gives 1 frame, every later latent 4.
        #expect(frames.map(\.count) == [9, 12, 12, 12])
        #expect(frames.allSatisfy { $0.width == 48 && $0.height == 32 })
        #expect(prompts == [0, 0, 1, 1])
    }

    /// The warm-up (each model alone once, before serving) leaves nothing behind: the same decoder and
    /// DiT then make the same video as without it.
    @Test func warmUpLeavesTheVideoUnchanged() async throws {
        let cold = try await run(latentFrames: 6, seed: 4, switchAt: 3)
        let warm = try await run(latentFrames: 6, seed: 4, switchAt: 3, warmUp: true)
        #expect(warm.frames.map(\.count) == cold.frames.map(\.count))
        #expect(zip(warm.frames, cold.frames).allSatisfy { $0.pixels == $1.pixels })
    }

    /// A chunk per latent frame: the first frame comes alone, then 4 per latent, and the video is the
    /// same as block by block.
    @Test func latentFrameChunksGiveTheSameVideo() async throws {
        let blocks = try await run(latentFrames: 9, seed: 5, switchAt: 3)
        let latents = try await run(latentFrames: 9, seed: 5, switchAt: 3, granularity: .latentFrame)
        #expect(latents.frames.map(\.count) == [1, 4, 4, 4, 4, 4, 4, 4, 4])
        #expect(latents.prompts == [0, 0, 0, 1, 1, 1, 1, 1, 1])
        #expect(latents.frames.flatMap(\.pixels) == blocks.frames.flatMap(\.pixels))
    }

    /// A block's clean pass runs when the next block starts (its latents are handed on one pass
    /// earlier); a switch with recache skips it, since the recache rewrites those keys.
    @Test func cleanPassRunsWithTheNextBlockAndIsSkippedByARecache() throws {
        let (prompts, _) = try makeParts()
        for recache in [true, false] {
            let generator = try StreamingGenerator(model: prompts.model, prompt: try prompts.context(for: "a cat"),
                                                   latentHeight: 4, latentWidth: 4, noise: PhiloxNoise(seed: 2))
            generator.recacheOnSwitch = recache
            var forwards: [Int] = []
            for b in 0..<4 {
                if b == 2 { generator.switchPrompt(to: try prompts.context(for: "a dog")) }
                forwards.append(try generator.nextBlock().timings.forwards)
            }
            // 4 steps; + the previous block's clean pass; at the switch: recache instead of it, or
            // (without recache) the clean pass alone.
            #expect(forwards == [4, 5, 5, 5], "recache \(recache)")
        }
    }

    @Test func sameSeedSameVideoOtherSeedOtherVideo() async throws {
        let a = try await run(latentFrames: 6, seed: 7).frames.flatMap(\.pixels)
        let b = try await run(latentFrames: 6, seed: 7).frames.flatMap(\.pixels)
        let c = try await run(latentFrames: 6, seed: 8).frames.flatMap(\.pixels)
        #expect(a == b)
        #expect(a != c)
    }

    /// The generator's own async sequence: latent blocks in order, a live switch at a block boundary.
    @Test func generatorBlocksStreamInOrder() async throws {
        let (prompts, _) = try makeParts()
        let generator = try StreamingGenerator(model: prompts.model, prompt: try prompts.context(for: "a cat"),
                                               latentHeight: 4, latentWidth: 4, noise: PhiloxNoise(seed: 2))
        let other = try prompts.context(for: "a dog")
        var starts: [Int] = [], promptIndices: [Int] = []
        for try await block in generator.blocks(limit: 4) {
            starts.append(block.startFrame)
            promptIndices.append(block.promptIndex)
            #expect(block.latents.shape == [3, 4, 4, 16])
            if block.index == 1 { generator.switchPrompt(to: other) }
        }
        #expect(starts == [0, 3, 6, 9])
        // Blocks are made on demand, so a switch made while block 1 is consumed lands on block 2.
        #expect(promptIndices == [0, 0, 1, 1])
    }

    @Test func promptEncoderCachesTextEncoderRuns() throws {
        let (prompts, _) = try makeParts()
        _ = try prompts.context(for: "a cat")
        _ = try prompts.context(for: "a dog")
        _ = try prompts.context(for: "a cat")
        #expect(prompts.textEncoderRuns == 2)
    }

    /// Past LongLive's 1024-frame RoPE table, with a cache whose size never changes.
    @Test func runsPastLongLivesPositionLimitWithFlatMemory() throws {
        let (prompts, _) = try makeParts()
        let generator = try StreamingGenerator(model: prompts.model, prompt: try prompts.context(for: "a cat"),
                                               latentHeight: 2, latentWidth: 2, noise: PhiloxNoise(seed: 1))
        let cacheBytes = generator.cacheBytes
        var last: LatentBlock?
        while generator.currentFrame < 1041 {
            if generator.currentFrame == 1029 { generator.switchPrompt(to: try prompts.context(for: "a dog")) }
            last = try generator.nextBlock()
        }
        let block = try #require(last)
        #expect(block.startFrame == 1038)
        #expect(try block.latents.toFloats().allSatisfy(\.isFinite))
        #expect(generator.cacheBytes == cacheBytes)
        #expect(generator.retainedLatentFrames <= 12)
    }
}

/// A consumer that stops pulling stops the generator: it never runs more than two blocks ahead.
@Suite struct VideoStreamBackpressureTests {
    @Test func producerWaitsForTheConsumer() async throws {
        let backend = CPUBackend()
        let c = WanDiTConfig(dim: 32, ffnDim: 64, heads: 2, layers: 1, textDim: 16)
        let dit = try WanDiT.load(from: WanDiT.randomWeights(c, on: backend), heads: 2, backend: backend)
        let prompt = try dit.encodePrompt(try backend.randomNormal([4, 16], seed: 1, offset: 0, dtype: .f32))
        let generator = try StreamingGenerator(model: dit, prompt: prompt, latentHeight: 2, latentWidth: 2, noise: PhiloxNoise(seed: 1))
        var iterator = VideoStream(generator: generator, decoder: nil).chunks(latentFrames: nil).makeAsyncIterator()
        _ = try await iterator.next()
        try await Task.sleep(for: .milliseconds(300))   // ample time for tens of blocks at this size
        // One block consumed, the next generated, at most one more waiting for its slot.
        #expect(generator.currentFrame <= 9, "generator ran to frame \(generator.currentFrame)")
    }
}
