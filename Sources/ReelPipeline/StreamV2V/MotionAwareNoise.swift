import ReelCore

/// StreamDiffusionV2's motion-aware noise rule (chenfengxu714/StreamDiffusionV2 `streamv2v/inference.py:51-57`,
/// `compute_noise_scale_and_step`): the more the input moves, the less noise is mixed into its latents and
/// the lower the first denoising step. State: the previous scale s (starts at s0).
///
///     r    = max over the chunk's frames of the RMS difference to the frame before
///     l2   = clamp(r / 0.2, 0, 1)
///     s'   = (s0 - 0.1 l2) * 0.9 + s * 0.1
///     step = Int(1000 s') - 100            (truncation)
public struct MotionAwareNoise: Sendable, Equatable {
    /// s0 (`init_noise_scale`).
    public let initialScale: Double
    /// The scale of the last chunk (s0 before the first).
    public private(set) var scale: Double
    /// Off: s0 and `Int(1000 s0) - 100` on every chunk (the fixture's "fixed noise" variant).
    public var enabled: Bool

    public init(initialScale: Double, enabled: Bool = true) {
        self.initialScale = initialScale; self.scale = initialScale; self.enabled = enabled
    }

    /// The noise scale and first step of the next chunk, whose frames moved by `motion` (`frameDifference`).
    public mutating func next(motion: Double) -> (scale: Double, step: Int) {
        guard enabled else { return (initialScale, Int(1000 * initialScale) - 100) }
        // Reference: r / 0.2 and the clamp in the frames' dtype (float32 here), then `.item()`, then Python floats.
        let l2 = Double(min(max(Float(motion) / Float(0.2), 0), 1))
        scale = (initialScale - 0.1 * l2) * 0.9 + scale * 0.1
        return (scale, Int(1000 * scale) - 100)
    }

    /// r of a chunk: the largest per-frame RMS difference between consecutive frames of `frames`, the
    /// previous chunk's last frame first (`torch.cat([session.last_image, images])`), each frame's values in
    /// any layout (the same for all), in [-1, 1].
    public static func frameDifference(_ frames: [[Float]]) throws -> Double {
        guard frames.count >= 2, let n = frames.first?.count, n > 0, frames.allSatisfy({ $0.count == n }) else {
            throw ReelError.input("the motion rule needs at least two frames of the same size")
        }
        var worst: Float = 0
        for k in 1..<frames.count {
            var sum = 0.0
            for i in 0..<n { let d = Double(frames[k][i] - frames[k - 1][i]); sum += d * d }
            worst = max(worst, Float(sum / Double(n)).squareRoot())
        }
        return Double(worst)
    }

    /// `frameDifference` of 8-bit frames (values v standing for v / 127.5 - 1), each in any layout (the same for
    /// all): the differences are integers, summed exactly, so only the final scaling rounds.
    public static func frameDifference(bytes frames: [ArraySlice<UInt8>]) throws -> Double {
        guard frames.count >= 2, let n = frames.first?.count, n > 0, frames.allSatisfy({ $0.count == n }) else {
            throw ReelError.input("the motion rule needs at least two frames of the same size")
        }
        var worst: Float = 0
        for k in 1..<frames.count {
            let sum = frames[k].withUnsafeBufferPointer { a in
                frames[k - 1].withUnsafeBufferPointer { b in
                    var total = 0, i = 0
                    while i < n {                                     // runs of 4096: an Int32 sum cannot overflow
                        let end = min(n, i + 4096)
                        var run: Int32 = 0
                        while i < end { let d = Int32(a[i]) - Int32(b[i]); run &+= d &* d; i += 1 }
                        total += Int(run)
                    }
                    return total
                }
            }
            worst = max(worst, Float(Double(sum) / (127.5 * 127.5) / Double(n)).squareRoot())
        }
        return Double(worst)
    }

    /// `frameDifference` of frames `[T, ...]` (axis 0 is time) on any backend: downloads them.
    public static func frameDifference(_ frames: Tensor) throws -> Double {
        try require(frames.rank >= 2 && frames.shape[0] >= 2, "MotionAwareNoise",
                    "expected at least two frames [T, ...], got \(frames.shape)")
        let values = try frames.backend.cast(frames, to: .f32).toFloats(), n = values.count / frames.shape[0]
        return try frameDifference((0..<frames.shape[0]).map { Array(values[($0 * n)..<(($0 + 1) * n)]) })
    }
}
