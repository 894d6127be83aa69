import Foundation
import Testing
import ReelCore
import ReelMedia
import ReelCPU
import ReelModels
@testable import ReelPipeline

/// Frames held in memory, handed out one at a time (a recorded input).
final class MemoryInput: VideoInput {
    let source = "memory"
    let width: Int, height: Int
    var frameRate: FrameRate? { nil }
    private var frames: [RGBFrames]
    private(set) var closed = false
    init(_ frames: [RGBFrames]) { self.frames = frames; width = frames.first?.width ?? 32; height = frames.first?.height ?? 32 }
    func nextFrame() throws -> RGBFrames? { closed || frames.isEmpty ? nil : frames.removeFirst() }
    func close() { closed = true }
}

/// Live video-to-video through the stages: Input (fitted frames, encoded) -> StreamBatchGenerator -> decoder.
@Suite struct VideoToVideoTests {
    let backend = CPUBackend(gemm: .own)

    func parts() throws -> (ModelParts, WanDiT.PromptContext, TinyEncoder) {
        let config = WanDiTConfig(dim: 32, ffnDim: 64, heads: 2, layers: 2, textDim: 16)
        let dit = try WanDiT.load(from: WanDiT.randomWeights(config, on: backend, seed: 3), heads: 2, backend: backend)
        let prompt = try dit.encodePrompt(try backend.randomNormal([4, 16], seed: 1, offset: 0, dtype: .f32))
        let decoder = try TinyDecoder.load(from: TinyDecoder.randomWeights(channels: [16, 8, 8, 8], on: backend, seed: 4), on: backend)
        let encoder = try TinyEncoder.load(from: TinyEncoder.randomWeights(channels: 8, on: backend, seed: 6), on: backend)
        return (ModelParts(dit: dit, newDecoder: { StreamingTinyDecoder(model: decoder) }), prompt, encoder)
    }

    /// A moving square: frame i has it at column 2 i.
    func frames(_ count: Int, size: Int = 32) throws -> [RGBFrames] {
        try (0..<count).map { i in
            var p = [UInt8](repeating: 30, count: size * size * 3)
            for y in 8..<16 { for x in (2 * i % size)..<min(size, 2 * i % size + 8) { p[(y * size + x) * 3] = 220 } }
            return try RGBFrames(width: size, height: size, pixels: p)
        }
    }

    func run(_ input: [RGBFrames], schedule: StreamV2VSchedule = .streamDiffusionV2, maxInputFrames: Int? = nil) async throws
        -> (chunks: [VideoChunk], input: MemoryInput) {
        let (model, prompt, encoder) = try parts()
        let source = MemoryInput(input)
        let pipeline = try VideoToVideoPipeline(
            model: model, encoder: StreamingTAEHVEncoder(model: encoder), encodeStream: backend, input: source,
            request: VideoToVideoRequest(geometry: BlockGeometry(width: 32, height: 32), schedule: schedule, maxInputFrames: maxInputFrames),
            prompt: prompt, noise: PhiloxStreamNoise(seed: 2))
        var chunks: [VideoChunk] = []
        for try await chunk in pipeline.chunks() { chunks.append(chunk) }
        return (chunks, source)
    }

    /// Frames out one for one with frames in (5, then 4 a block), in order, the stream batch's last blocks
    /// brought out at the end of the input, and the input closed; a trailing partial group is not converted.
    @Test(arguments: [true, false]) func outputMatchesTheInputFrameForFrame(streamBatch: Bool) async throws {
        var schedule = StreamV2VSchedule.streamDiffusionV2
        schedule.streamBatch = streamBatch
        let (chunks, input) = try await run(try frames(23), schedule: schedule)   // 5 + 4 * 4 + 2 left over
        #expect(chunks.map { $0.frames?.count ?? 0 } == [5, 4, 4, 4, 4])
        #expect(chunks.map(\.block.index) == [0, 1, 2, 3, 4])
        #expect(chunks.map(\.block.startFrame) == [0, 2, 3, 4, 5])
        #expect(input.closed)
    }

    /// The stream batch changes the schedule (levels of consecutive blocks in one forward), so its video differs
    /// from the one without it; each is deterministic for a seed.
    @Test func streamBatchIsDeterministicAndDiffersFromWithout() async throws {
        let input = try frames(13)
        let a = try await run(input).chunks, b = try await run(input).chunks
        #expect(a.map { $0.frames?.pixels ?? [] } == b.map { $0.frames?.pixels ?? [] })
        var plain = StreamV2VSchedule.streamDiffusionV2
        plain.streamBatch = false
        let c = try await run(input, schedule: plain).chunks
        #expect(a.last?.frames?.pixels != c.last?.frames?.pixels)
    }

    @Test func limitsAndBadInputs() async throws {
        let limited = try await run(try frames(30), maxInputFrames: 13).chunks
        #expect(limited.map { $0.frames?.count ?? 0 } == [5, 4, 4])
        await #expect(throws: ReelError.self) { _ = try await run(try frames(4)) }
        let (model, prompt, encoder) = try parts()
        #expect(throws: ReelError.self) {
            _ = try VideoToVideoPipeline(model: model, encoder: StreamingTAEHVEncoder(model: encoder), encodeStream: backend,
                                         input: MemoryInput(try frames(9, size: 16)),
                                         request: VideoToVideoRequest(geometry: BlockGeometry(width: 32, height: 32)),
                                         prompt: prompt, noise: PhiloxStreamNoise(seed: 2))
        }
    }
}
