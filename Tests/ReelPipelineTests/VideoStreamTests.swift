import Foundation
import Testing
import ReelCore
import ReelMedia
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

    func makeParts(seed: UInt64 = 1) throws -> (PromptEncoder, TinyDecoder) {
        let tok = try Tokenizer(contentsOf: Self.fixtures.appendingPathComponent("tokenizer/nfkc/tokenizer.json"))
        let t5 = try UMT5Encoder.load(
            from: UMT5Encoder.randomWeights(UMT5Config(vocabulary: tok.vocabularySize, dim: 16, heads: 2, headDim: 8, ffnDim: 32, layers: 1),
                                            on: backend), backend: backend)
        let dit = try WanDiT.load(from: WanDiT.randomWeights(Self.ditConfig, on: backend, seed: seed), heads: 2, backend: backend)
        let taehv = FilteredTensorSource(try WeightFileTensors(path: Self.fixtures.appendingPathComponent("vae/taehv_decoder.safetensors").path),
                                         excluding: ["input.", "output."])
        return (try PromptEncoder(tokenizer: tok, textEncoder: t5, model: dit), try TinyDecoder.load(from: taehv, on: backend))
    }

    func makeModel(seed: UInt64 = 1) throws -> (PromptEncoder, ModelParts) {
        let (prompts, decoder) = try makeParts(seed: seed)
        return (prompts, ModelParts(dit: prompts.model, newDecoder: { StreamingTinyDecoder(model: decoder) },
                                    conditioner: { try prompts.context(for: $0) }))
    }

    func run(latentFrames: Int, seed: UInt64, switchAt: Int? = nil, granularity: Pipeline.Granularity = .block,
             warmUp: Bool = false) async throws -> (frames: [RGBFrames], prompts: [Int]) {
        var (prompts, model) = try makeModel()
        let first = try prompts.context(for: "a red circle moves left on a blue background")
        let other = try prompts.context(for: "a green square bounces")
        if warmUp {
            // The warm-up's decoder is the one the video then decodes with: its reset is under test too.
            let decoder = model.newDecoder()
            try await EngineWarmUp.run(dit: prompts.model, prompt: other, switchTo: first, decoder: decoder, decodeStream: backend,
                                       geometry: BlockGeometry(latentWidth: 6, latentHeight: 4))
            model = ModelParts(dit: prompts.model, newDecoder: { decoder }, conditioner: { try prompts.context(for: $0) })
        }
        let request = PipelineRequest(geometry: BlockGeometry(width: 48, height: 32), latentFrames: latentFrames, granularity: granularity)
        let contexts = UncheckedSendable(other)
        let pipeline = try Pipeline(model: model, request: request, prompt: first, noise: PhiloxNoise(seed: seed)) { frame in
            frame == switchAt ? contexts.value : nil
        }
        var frames: [RGBFrames] = [], promptIndices: [Int] = []
        for try await chunk in pipeline.chunks() {
            frames.append(try #require(chunk.frames))
            promptIndices.append(chunk.block.promptIndex)
            #expect(chunk.block.timings.seconds.isFinite && chunk.block.timings.seconds >= 0)
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

/// The stages' channels and the control channel: backpressure, pause, resume, live prompts and stop.
@Suite struct PipelineControlTests {
    static func model() throws -> (ModelParts, WanDiT.PromptContext) {
        let backend = CPUBackend(gemm: .own)
        let c = WanDiTConfig(dim: 32, ffnDim: 64, heads: 2, layers: 1, textDim: 16)
        let dit = try WanDiT.load(from: WanDiT.randomWeights(c, on: backend), heads: 2, backend: backend)
        let prompt = try dit.encodePrompt(try backend.randomNormal([4, 16], seed: 1, offset: 0, dtype: .f32))
        let conditioner: (String) throws -> WanDiT.PromptContext = { text in
            try dit.encodePrompt(try backend.randomNormal([4, 16], seed: UInt64(text.utf8.count), offset: 0, dtype: .f32))
        }
        return (ModelParts(dit: dit, conditioner: conditioner), prompt)
    }

    static func pipeline(latentFrames: Int?) throws -> Pipeline {
        let (model, prompt) = try model()
        return try Pipeline(model: model, request: PipelineRequest(geometry: BlockGeometry(width: 16, height: 16), latentFrames: latentFrames,
                                                                   decode: false),
                            prompt: prompt, noise: PhiloxNoise(seed: 1))
    }

    /// A consumer that stops pulling stops the generator: it never runs more than a block or two ahead.
    @Test func producerWaitsForTheConsumer() async throws {
        let pipeline = try Self.pipeline(latentFrames: nil)
        var iterator = pipeline.chunks().makeAsyncIterator()
        _ = try await iterator.next()
        try await Task.sleep(for: .milliseconds(300))   // ample time for tens of blocks at this size
        // One block consumed, one in the output channel, one in the latents channel; the next waits to reserve.
        #expect(pipeline.generator.currentFrame <= 9, "generator ran to frame \(pipeline.generator.currentFrame)")
    }

    /// Pause holds the generator at a block boundary (before the first block too; what is in flight drains),
    /// a live prompt switches at the next block with its text reported, resume goes on, and stop ends the
    /// video cleanly.
    @Test func pauseResumeSwitchAndStop() async throws {
        let pipeline = try Self.pipeline(latentFrames: nil)
        pipeline.control.send(.pause)
        var iterator = pipeline.chunks().makeAsyncIterator()
        try await Task.sleep(for: .milliseconds(200))
        #expect(pipeline.generator.currentFrame == 0, "a paused pipeline started")
        pipeline.control.send(.switchPrompt("a dog"))
        pipeline.control.send(.resume)
        let first = try #require(try await iterator.next())
        #expect(first.block.index == 0 && first.block.switchedTo == "a dog" && first.block.promptIndex == 1 && first.frames == nil)
        let second = try #require(try await iterator.next())
        #expect(second.block.index == 1 && second.block.switchedTo == nil && second.block.promptIndex == 1)

        pipeline.control.send(.pause)
        let made = try await Self.settledFrame(pipeline) / 3                 // the generator waits for a place
        for _ in 2..<made { _ = try #require(try await iterator.next()) }   // what was made before the pause
        #expect(try await Self.settledFrame(pipeline) / 3 == made, "a paused generator went on")
        pipeline.control.send(.switchPrompt("a cat"))
        pipeline.control.send(.switchPrompt("a bird"))                       // the newest wins
        pipeline.control.send(.resume)
        let resumed = try #require(try await iterator.next())
        #expect(resumed.block.index == made && resumed.block.switchedTo == "a bird" && resumed.block.promptIndex == 2)
        pipeline.control.send(.stop)
        var after = 0
        while try await iterator.next() != nil { after += 1 }
        #expect(after <= 3)
    }

    /// The generator's frame once it has not moved for 300 ms (it waits for a place or a resume); a slow
    /// machine only makes this take longer.
    static func settledFrame(_ pipeline: Pipeline) async throws -> Int {
        var last = pipeline.generator.currentFrame, still = 0
        while still < 3 {
            try await Task.sleep(for: .milliseconds(100))
            let now = pipeline.generator.currentFrame
            still = now == last ? still + 1 : 0
            last = now
        }
        return last
    }

    /// `finish` (a live prompt source that ended) lets the prompts sent before it start, then ends the video;
    /// sent before the first block, the video still gets one.
    @Test func finishAppliesPendingPromptsThenEnds() async throws {
        let early = try Self.pipeline(latentFrames: nil)
        early.control.send(.switchPrompt("a dog"))
        early.control.send(.finish)
        var blocks: [LatentBlock] = []
        for try await chunk in early.chunks() { blocks.append(chunk.block) }
        #expect(blocks.map(\.index) == [0] && blocks[0].switchedTo == "a dog")

        let later = try Self.pipeline(latentFrames: nil)
        var iterator = later.chunks().makeAsyncIterator()
        _ = try await iterator.next()
        later.control.send(.switchPrompt("a cat"))
        later.control.send(.finish)
        var switched = 0, after = 0
        while let chunk = try await iterator.next() {
            if chunk.block.switchedTo == "a cat" { switched += 1 } else if switched > 0 { after += 1 }
        }
        #expect(switched == 1 && after == 0)
    }

    /// A failing stage ends the video with its error (here the Conditioner: no text encoder).
    @Test func stageErrorsReachTheConsumer() async throws {
        let backend = CPUBackend(gemm: .own)
        let c = WanDiTConfig(dim: 32, ffnDim: 64, heads: 2, layers: 1, textDim: 16)
        let dit = try WanDiT.load(from: WanDiT.randomWeights(c, on: backend), heads: 2, backend: backend)
        let prompt = try dit.encodePrompt(try backend.randomNormal([4, 16], seed: 1, offset: 0, dtype: .f32))
        let pipeline = try Pipeline(model: ModelParts(dit: dit),
                                    request: PipelineRequest(geometry: BlockGeometry(width: 16, height: 16), latentFrames: nil, decode: false),
                                    prompt: prompt, noise: PhiloxNoise(seed: 1))
        pipeline.control.send(.switchPrompt("needs a text encoder"))
        await #expect(throws: ReelError.self) { for try await _ in pipeline.chunks() {} }
    }

    /// When something last happened, set on one thread and read on another.
    final class TimeMark: @unchecked Sendable {
        private let lock = NSLock()
        private var _instant: ContinuousClock.Instant?
        func mark() { lock.withLock { _instant = .now } }
        var instant: ContinuousClock.Instant? { lock.withLock { _instant } }
    }

    /// A decoder that decodes its first block, then waits until the generator stage is inside the script for a
    /// later block, then fails.
    final class FailingDecoder: VideoDecoder {
        let inner: any VideoDecoder
        let generatorBusy: DispatchSemaphore
        var decoded = 0
        init(_ inner: any VideoDecoder, generatorBusy: DispatchSemaphore) { self.inner = inner; self.generatorBusy = generatorBusy }
        var latentChannels: Int { inner.latentChannels }
        var spatialStride: Int { inner.spatialStride }
        func decode(_ latents: Tensor) throws -> Tensor {
            decoded += 1
            guard decoded > 1 else { return try inner.decode(latents) }
            generatorBusy.wait()
            throw ReelError.input("the decoder failed (on purpose)")
        }
        func reset() { inner.reset() }
    }

    /// An error leaves the pipeline only once its stages have returned: when the decoder fails while the generator
    /// stage is busy (here in its prompt script, for 0.6 s), the consumer sees the error after the generator stage
    /// has left the script. Before, the error arrived at once, and a command that exited on it could find a stage
    /// thread still issuing device work (a segmentation fault on a GPU).
    @Test func anErrorArrivesAfterTheStagesStopped() async throws {
        let (prompts, model) = try VideoStreamTests().makeModel()
        let busy = DispatchSemaphore(value: 0)
        let decoder = FailingDecoder(try #require(model.newDecoder()), generatorBusy: busy)
        let parts = ModelParts(dit: prompts.model, newDecoder: { decoder })
        let scriptLeft = TimeMark()
        let request = PipelineRequest(geometry: BlockGeometry(width: 48, height: 32), latentFrames: 12)
        let pipeline = try Pipeline(model: parts, request: request, prompt: try prompts.context(for: "a red circle"),
                                    noise: PhiloxNoise(seed: 1)) { frame in
            if frame >= 6 {
                busy.signal()
                Thread.sleep(forTimeInterval: 0.6)
                scriptLeft.mark()
            }
            return nil
        }
        var chunks = 0
        var failedAt: ContinuousClock.Instant?
        do {
            for try await _ in pipeline.chunks() { chunks += 1 }
        } catch {
            failedAt = .now
            #expect("\(error)".contains("on purpose"))
        }
        #expect(chunks == 1)
        let left = try #require(scriptLeft.instant, "the generator stage left its script before the error arrived")
        #expect(try #require(failedAt) >= left)
    }
}

/// The bounded channel between stages.
@Suite struct ChannelTests {
    @Test func orderBackpressureFinishAndCancel() async throws {
        let channel = Channel<Int>(capacity: 2)
        Thread.detachNewThread {
            for i in 0..<5 { channel.send(i) }
            channel.finish()
        }
        var got: [Int] = []
        while let x = try await channel.next() { got.append(x) }
        #expect(got == [0, 1, 2, 3, 4])

        let failing = Channel<Int>(capacity: 1)
        failing.send(7)
        failing.finish(throwing: ReelError.input("broken"))
        #expect(try failing.receive() == 7)
        #expect(throws: ReelError.self) { _ = try failing.receive() }

        let cancelled = Channel<Int>(capacity: 1)
        #expect(cancelled.reserve())
        #expect(cancelled.send(1))
        cancelled.cancel()
        #expect(!cancelled.send(2) && !cancelled.reserve())
        #expect(try cancelled.receive() == nil)
    }

    /// A reservation holds the place: the producer's next reservation waits until the consumer has taken the
    /// reserved item (so a stage never makes an item its channel cannot take yet).
    @Test func reservationHoldsThePlace() async throws {
        let channel = Channel<Int>(capacity: 1)
        #expect(channel.reserve())
        let reservedAgain = Countdown(1)
        Thread.detachNewThread {
            _ = channel.reserve()
            _ = reservedAgain.take()
            channel.send(2)
            channel.finish()
        }
        try await Task.sleep(for: .milliseconds(100))
        #expect(reservedAgain.take(), "the second reservation waited for the reserved place")
        channel.send(1)
        #expect(try await channel.next() == 1)
        #expect(try await channel.next() == 2)
        #expect(try await channel.next() == nil)
    }
}
