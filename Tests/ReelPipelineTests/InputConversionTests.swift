import ReelCore
import ReelCPU
import ReelMedia
@testable import ReelPipeline
import Testing

/// The Input stage's host work: the motion rule on 8-bit frames and the frames' upload as model input.
@Suite struct InputConversionTests {
    let b = CPUBackend()

    func frames(count: Int, bytes: Int, seed: UInt64) -> [[UInt8]] {
        var rng = SplitMix(seed: seed)
        return (0..<count).map { _ in (0..<bytes).map { _ in UInt8(truncatingIfNeeded: rng.next() >> 56) } }
    }

    @Test func motionOfBytesMatchesMotionOfFloats() throws {
        for (count, bytes, seed) in [(2, 3 * 64 * 48, 1 as UInt64), (5, 3 * 100 * 37, 2), (5, 9000, 3)] {
            var f = frames(count: count, bytes: bytes, seed: seed)
            if count > 2 { f[count - 1] = f[count - 2] }          // a still frame: one difference is 0
            let fromBytes = try MotionAwareNoise.frameDifference(bytes: f.map { $0[...] })
            let fromFloats = try MotionAwareNoise.frameDifference(f.map { $0.map { Float($0) / 127.5 - 1 } })
            #expect(fromBytes > 0.5)
            #expect(abs(fromBytes - fromFloats) <= 1e-6 * fromFloats, "\(fromBytes) vs \(fromFloats)")
        }
        let still = frames(count: 1, bytes: 30, seed: 4)[0]
        #expect(try MotionAwareNoise.frameDifference(bytes: [still[...], still[...]]) == 0)
        #expect(throws: ReelError.self) { try MotionAwareNoise.frameDifference(bytes: [still[...]]) }
        #expect(throws: ReelError.self) { try MotionAwareNoise.frameDifference(bytes: [still[...], still.dropLast()]) }
    }

    @Test func modelInputIsTheFramesInMinusOneToOne() throws {
        var pixels: [UInt8] = [0, 255, 128, 1, 254, 127]
        for i in 0..<12 { pixels.append(UInt8((i * 37) % 256)) }
        let clip = try RGBFrames(width: 3, height: 1, pixels: pixels)
        let x = try clip.modelInput(on: b, dtype: .f32)
        #expect(x.shape == [1, 2, 1, 3, 3] && x.dtype == .f32)
        let got = try x.toFloats(), want = clip.pixels.map { Float($0) / 127.5 - 1 }
        #expect(zip(got, want).allSatisfy { abs($0 - $1) <= 1.2e-7 }, "\(got) vs \(want)")
        let half = try clip.modelInput(on: b, dtype: .bf16)
        #expect(half.dtype == .bf16)
        #expect(zip(try b.cast(half, to: .f32).toFloats(), want).allSatisfy { abs($0 - $1) <= 4e-3 })
    }
}

/// A small deterministic generator for test data.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
