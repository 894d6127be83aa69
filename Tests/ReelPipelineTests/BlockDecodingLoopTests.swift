import ReelCore
import ReelMedia
import ReelCPU
import ReelIO
import ReelModels
import ReelPipeline
import Foundation
import Testing

/// A sink that keeps what it receives, block by block.
private final class RecordingSink: FrameSink {
    let destination = "memory"
    let fps = 16
    var blocks: [RGBFrames] = []
    var finished = false
    func write(_ frames: RGBFrames) throws { blocks.append(frames) }
    func finish() throws { finished = true }
}

@Suite struct BlockDecodingLoopTests {
    @Test func blocksReachTheSinkAsTheyAreDecoded() async throws {
        let b = CPUBackend()
        let path = VideoStreamTests.fixtures.appendingPathComponent("vae/taehv_decoder.safetensors").path
        let file = try WeightFiles.open(path)
        let model = try TinyDecoder.load(from: FilteredTensorSource(WeightFileTensors(file), excluding: ["input.", "output."]), on: b)
        let latents = try b.permute(file.tensor("input.latents", on: b, as: .f32), [0, 1, 3, 4, 2])   // [1, 5, 3, 5, 16]
        let expected = try RGBFrames(modelOutput: b.affine(
            b.permute(file.tensor("output.video", on: b, as: .f32), [0, 1, 3, 4, 2]), scale: 2, bias: -1))
        // Blocks as the generator yields them: [T, h, w, C].
        let parts = try [(0, 3), (3, 2)].map { try b.slice(latents, axis: 1, start: $0.0, length: $0.1).reshaped([$0.1, 3, 5, 16]) }
        let stream = AsyncStream<Tensor> { c in
            for p in parts { c.yield(p) }
            c.finish()
        }
        let sink = RecordingSink()
        var reports: [BlockDecodingLoop.BlockReport] = []
        let total = try await BlockDecodingLoop.run(stream, decoder: StreamingTinyDecoder(model: model), sink: sink) { reports.append($0) }
        #expect(total == 17)
        #expect(sink.blocks.map(\.count) == [9, 8])
        #expect(reports.map(\.frames) == [9, 8])
        #expect(sink.finished)
        let got = sink.blocks.flatMap(\.pixels)
        // Same bytes as the reference frames, up to a rounding step where a value sits on a boundary.
        let diffs = zip(got, expected.pixels).map { abs(Int($0) - Int($1)) }
        #expect(got.count == expected.pixels.count)
        #expect(diffs.max() ?? 99 <= 1)
    }
}
