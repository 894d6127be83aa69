import ReelCore
import ReelCPU
import ReelMedia
import Testing

@Suite struct VideoFramesTests {
    @Test func modelOutputToBytes() throws {
        let b = CPUBackend()
        // clamp(x, -1, 1) * 0.5 + 0.5, to 0...255 rounded to nearest.
        let t = try b.tensor([-2, -1, 0, 1, 3, 0.5], shape: [1, 2, 1, 1, 3])
        let frames = try RGBFrames(modelOutput: t)
        #expect(frames.count == 2 && frames.width == 1 && frames.height == 1)
        #expect(frames.pixels == [0, 0, 128, 255, 255, 191])
        let rank4 = try RGBFrames(modelOutput: t.reshaped([2, 1, 1, 3]))
        #expect(rank4 == frames)
        #expect(throws: ReelError.self) { try RGBFrames(modelOutput: b.zeros([1, 2, 1, 1, 4])) }
        #expect(throws: ReelError.self) { try RGBFrames(width: 2, height: 2, pixels: [1, 2, 3]) }
    }
}
