import ReelCore

/// The scalars of StreamDiffusionV2's live video-to-video schedule (chenfengxu714/StreamDiffusionV2
/// `configs/wan_causal_dmd_v2v.yaml`, `streamv2v/inference.py`), and the switches that turn each of its
/// mechanisms off (the wrong variants its parity fixture records).
public struct StreamV2VSchedule: Codable, Sendable, Equatable {
    /// Denoising steps on the 1000-step grid, used as written (no warp). Entry 0 is replaced by the
    /// motion-aware step on every block after the first (`causal_stream_inference.py:274-275`).
    /// Reference default (`--step 2`): [700, 500]; up to [700, 500, 400, 200].
    public var denoisingSteps: [Int]
    /// Flow-matching shift (hard-coded 8 in `wan_wrapper.py:163-166`).
    public var shift: Double
    /// Initial noise scale s0 (`--noise_scale`, 0.8).
    public var noiseScale: Double
    /// Adapt the noise scale and first step to the input's motion (`compute_noise_scale_and_step`);
    /// off: s0 and `1000 s0 - 100` on every block.
    public var motionAware: Bool
    /// Frames per cache row, sink included (`num_kv_cache`: 6).
    public var cacheFrames: Int
    /// Sink frames (`num_sink_tokens`: 3).
    public var sinkFrames: Int
    /// Sink refresh threshold (`adapt_sink_threshold`: 0.2); nil: never refresh (the `_fast.yaml` -1).
    public var sinkRefreshThreshold: Float?
    /// One forward over every denoising level of N consecutive blocks (`inference_stream`); off: all
    /// steps of a block, then the next (`inference_wo_batch`), with no latency.
    public var streamBatch: Bool
    /// A block whose position reaches this frame is placed at `cacheFrames - 1` instead, and counting
    /// goes on from there (`inference.py:234-236`, `t_refresh` 50); nil: positions grow forever.
    public var ropeResetFrame: Int?

    public init(denoisingSteps: [Int] = [700, 500], shift: Double = 8, noiseScale: Double = 0.8,
                motionAware: Bool = true, cacheFrames: Int = 6, sinkFrames: Int = 3,
                sinkRefreshThreshold: Float? = 0.2, streamBatch: Bool = true, ropeResetFrame: Int? = 50) {
        self.denoisingSteps = denoisingSteps; self.shift = shift; self.noiseScale = noiseScale
        self.motionAware = motionAware; self.cacheFrames = cacheFrames; self.sinkFrames = sinkFrames
        self.sinkRefreshThreshold = sinkRefreshThreshold; self.streamBatch = streamBatch
        self.ropeResetFrame = ropeResetFrame
    }

    /// The live demo's configuration (1.3B, `--step 2`).
    public static let streamDiffusionV2 = StreamV2VSchedule()

    /// The steps StreamDiffusionV2 offers (`--step 1...4`): the first `count` are used.
    public static let stepLadder = [700, 500, 400, 200]

    /// The live demo's configuration with `steps` denoising steps (1...4, the first of `stepLadder`) and an
    /// initial noise scale; `validate()` checks the scale.
    public static func streamDiffusionV2(steps: Int, noiseScale: Double) throws -> StreamV2VSchedule {
        guard (1...stepLadder.count).contains(steps) else {
            throw ReelError.input("video-to-video takes 1 to \(stepLadder.count) denoising steps, got \(steps)")
        }
        var schedule = StreamV2VSchedule(denoisingSteps: Array(stepLadder.prefix(steps)), noiseScale: noiseScale)
        try schedule.validate()
        return schedule
    }

    /// Denoising levels N (steps per block).
    public var levels: Int { denoisingSteps.count }

    /// Checks what the generator relies on; the message says what to change.
    public func validate() throws {
        guard !denoisingSteps.isEmpty else { throw ReelError.input("StreamDiffusionV2 needs at least one denoising step") }
        guard denoisingSteps.allSatisfy({ (1...1000).contains($0) }) else {
            throw ReelError.input("denoising steps must lie on the model's 1000-step grid (1...1000), got \(denoisingSteps)")
        }
        guard zip(denoisingSteps, denoisingSteps.dropFirst()).allSatisfy({ $0 > $1 }) else {
            throw ReelError.input("denoising steps must decrease, got \(denoisingSteps)")
        }
        guard (0.2...1).contains(noiseScale) else {
            throw ReelError.input("noise scale must lie in 0.2...1 (its first step is 1000 s - 100), got \(noiseScale)")
        }
        guard shift > 0 else { throw ReelError.input("shift must be positive, got \(shift)") }
        guard sinkFrames >= 0, cacheFrames > sinkFrames + 1 else {
            throw ReelError.input("the cache (\(cacheFrames) frames) must hold the \(sinkFrames) sink frames and two more")
        }
        if let t = sinkRefreshThreshold, !t.isFinite { throw ReelError.input("sink refresh threshold must be finite") }
        if let r = ropeResetFrame, r < cacheFrames {
            throw ReelError.input("the RoPE reset frame (\(r)) must be at least the cache length (\(cacheFrames))")
        }
    }
}
