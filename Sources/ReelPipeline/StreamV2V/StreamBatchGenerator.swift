import ReelCore
import ReelModels

/// Output latents of one input block.
public struct StreamV2VBlock: @unchecked Sendable {
    /// The input block these latents denoise (0: the first block).
    public var index: Int
    /// Denoised latents `[frames, H, W, C]` in the model's dtype (the first block: as many frames as it
    /// was given; every later block: 1).
    public var latents: Tensor
}

/// What one call did, for tests and logs: the reference's per-call trace.
public struct StreamV2VStep: Sendable {
    /// The input block of this call.
    public var block: Int
    /// Noise scale mixed into its latents.
    public var noiseScale: Double
    /// Timestep of each level (one entry without the stream batch: the block's steps in order).
    public var timesteps: [Int]
    /// Latent frame position (RoPE and cache) of each level's block, level 0 first.
    public var positions: [Int]
    /// Sink refreshes decided in this call.
    public var refreshes: [SinkRefreshKVCache.Refresh]
}

/// StreamDiffusionV2's live video-to-video generator (chenfengxu714/StreamDiffusionV2 `streamv2v/inference.py`
/// `start_stream_session` / `run_stream_batch`, `models/wan/causal_stream_inference.py` `prepare` /
/// `inference_stream` / `inference_wo_batch`), beside LongLive's `StreamingGenerator`.
///
/// A session: `start(latents:)` with the first chunk's latents (the reference's 5 frames give 2), denoised
/// at once with the configured steps; then `push(latent:motion:)` with one latent frame per block. With
/// the stream batch, one forward holds all N denoising levels: level i the block that came i calls ago,
/// at its own timestep, position and cache row (`SinkRefreshKVCache`), so a block comes out N - 1 calls
/// after it went in. Input latents are the VAE encoder's raw means (no latent normalization: the
/// reference's `stream_encode(is_scale=False)`), channel-last `[frames, H, W, C]`.
///
/// Noise: a block's input is `eps * s + z * (1 - s)` with s from `MotionAwareNoise`; between levels the
/// x0 is re-noised to the next step with fresh noise; every draw comes from `noise` in the reference's
/// call order, so a recorded run replays (`RecordedStreamNoise`).
///
/// Deliberate deviation: a new session is a new generator (fresh queues and step list); the reference
/// keeps its eviction queues and last adaptive step across sessions (docs/streamdiffusionv2.md, 12.3).
public final class StreamBatchGenerator: @unchecked Sendable {
    public let model: WanDiT
    public let schedule: StreamV2VSchedule
    public let latentShape: (h: Int, w: Int, c: Int)
    /// The self-attention cache: one row per level with the stream batch, else one.
    public let cache: SinkRefreshKVCache
    let noise: any StreamNoiseSource
    let prompt: WanDiT.PromptContext
    private var motionRule: MotionAwareNoise
    /// sigma(t) for t = 0...1000: the grid point nearest t (no warp; the reference's argmin).
    private let sigmaOfStep: [Float]
    /// Interleaved stream batches (1: StreamDiffusionV2's one-device schedule): call k (block k) continues
    /// stream batch `(k - 1) % chains`, so it depends on call k - chains, not k - 1. `BlockPipelinedStreamBatch`
    /// over N devices runs N of them (as StreamDiffusionV2's pipeline does); this generator with `chains: N` is
    /// its one-device emulation.
    public let chains: Int
    /// Each stream batch, level 0 first: each level's latents `[1, H, W, C]` and its block's position.
    private var batches: [[(latents: Tensor, startFrame: Int, block: Int)]] = []
    private var nextFrame = 0
    private var blocksIn = 0
    /// The last call's trace.
    public private(set) var lastStep: StreamV2VStep?

    /// - Parameters:
    ///   - latentHeight, latentWidth: latent size (video size / 8), multiples of the patch.
    ///   - cacheDType: the cache's dtype (default: the model's).
    public init(model: WanDiT, prompt: WanDiT.PromptContext, latentHeight: Int, latentWidth: Int,
                schedule: StreamV2VSchedule = .streamDiffusionV2, noise: any StreamNoiseSource,
                cacheDType: DType? = nil, chains: Int = 1) throws {
        try schedule.validate()
        guard chains >= 1 else { throw ReelError.input("the stream batch needs at least one chain, got \(chains)") }
        guard chains == 1 || schedule.streamBatch else {
            throw ReelError.input("interleaved stream batches (\(chains)) need the stream batch on")
        }
        self.chains = chains
        if model.kvCache != .model {
            throw ReelError.input("--kv-cache \(model.kvCache.rawValue) is LongLive 1.0's ring cache only; "
                                  + "StreamDiffusionV2's sink-refresh cache (SinkRefreshKVCache, video-to-video) stores "
                                  + "keys and values in the model's dtype: leave --kv-cache at bf16")
        }
        let c = model.config
        try c.checkLatentSize(height: latentHeight, width: latentWidth)
        self.model = model
        self.schedule = schedule
        self.prompt = prompt
        self.noise = noise
        self.latentShape = (latentHeight, latentWidth, c.inChannels)
        self.motionRule = MotionAwareNoise(initialScale: schedule.noiseScale, enabled: schedule.motionAware)
        self.sigmaOfStep = try FlowMatchSchedule(steps: Array(0...1000), warp: false, shift: schedule.shift).sigmas
        self.cache = try SinkRefreshKVCache(
            backend: model.backend, layers: c.layers, rows: schedule.streamBatch ? schedule.levels : 1,
            tokensPerFrame: (latentHeight / c.patch) * (latentWidth / c.patch), heads: c.heads, headDim: c.headDim,
            slots: schedule.cacheFrames, sinkFrames: schedule.sinkFrames, threshold: schedule.sinkRefreshThreshold,
            totalSteps: schedule.levels, dtype: cacheDType ?? model.dtype)
    }

    /// Blocks given so far, the first included.
    public var blocksReceived: Int { blocksIn }

    /// Starts the session with the first chunk's latents `[n, H, W, C]` (the reference: 2, from 5 video
    /// frames; 1 <= n < cacheFrames): noised with s0, denoised with the configured steps (a forward over
    /// all n frames per step, at positions 0 ..< n), returned at once.
    public func start(latents z: Tensor) throws -> StreamV2VBlock {
        guard blocksIn == 0 else {
            throw ReelError.input("StreamBatchGenerator: the session has started; a new session needs a new generator")
        }
        let n = try checkLatents(z, what: "the first chunk's latents", frames: nil)
        guard n < schedule.cacheFrames else {
            throw ReelError.input("the first chunk has \(n) latent frames; the \(schedule.cacheFrames)-frame cache "
                                  + "takes at most \(schedule.cacheFrames - 1)")
        }
        let s = schedule.noiseScale
        var x = try noisy(z, scale: s, draw: .input(block: 0), frames: n)
        let steps = schedule.denoisingSteps
        var x0 = x
        for (i, t) in steps.enumerated() {
            x0 = try denoise(x, segments: [.init(frames: n, startFrame: 0, timestep: Float(t), row: 0)], steps: [t])
            if i + 1 < steps.count {
                x = try renoise(x0, to: steps[i + 1], draw: .renoise(block: 0, level: i), frames: n)
            }
        }
        if schedule.streamBatch {
            // Every level's cache row starts as the first block's; levels start as zeros at the next
            // position (causal_stream_inference.py:221-249).
            try cache.replicateFirstRow()
            let zeros = try model.backend.zeros([1, latentShape.h, latentShape.w, latentShape.c], dtype: x0.dtype)
            batches = Array(repeating: Array(repeating: (zeros, n, -1), count: schedule.levels), count: chains)
        }
        nextFrame = n
        blocksIn = 1
        lastStep = StreamV2VStep(block: 0, noiseScale: s, timesteps: steps, positions: [0],
                                 refreshes: cache.takeRefreshes())
        return StreamV2VBlock(index: 0, latents: x0)
    }

    /// Takes the next block's latent `[1, H, W, C]` and the motion of its video frames
    /// (`MotionAwareNoise.frameDifference`: the chunk's frames after the previous chunk's last frame).
    /// Returns the block finished by this call: with the stream batch the one given N - 1 calls ago (nil
    /// for the first N - 1 calls), without it this one.
    public func push(latent z: Tensor, motion: Double) throws -> StreamV2VBlock? {
        guard blocksIn > 0 else { throw ReelError.input("StreamBatchGenerator: start(latents:) comes first") }
        guard motion.isFinite, motion >= 0 else {
            throw ReelError.input("motion must be a finite non-negative RMS difference, got \(motion)")
        }
        _ = try checkLatents(z, what: "a block's latent", frames: 1)
        let block = blocksIn
        let (s, step) = motionRule.next(motion: motion)
        let x = try noisy(z, scale: s, draw: .input(block: block), frames: 1)
        if let reset = schedule.ropeResetFrame, nextFrame >= reset { nextFrame = schedule.cacheFrames - 1 }
        let steps = [step] + schedule.denoisingSteps.dropFirst()
        defer { nextFrame += 1; blocksIn += 1 }

        guard schedule.streamBatch else {
            // inference_wo_batch: the block's steps one after another over the one cache row.
            var x = x, x0 = x
            for (i, t) in steps.enumerated() {
                x0 = try denoise(x, segments: [.init(frames: 1, startFrame: nextFrame, timestep: Float(t), row: 0)],
                                 steps: [t])
                if i + 1 < steps.count {
                    x = try renoise(x0, to: steps[i + 1], draw: .renoise(block: block, level: i), frames: 1)
                }
            }
            lastStep = StreamV2VStep(block: block, noiseScale: s, timesteps: steps, positions: [nextFrame],
                                     refreshes: cache.takeRefreshes())
            return StreamV2VBlock(index: block, latents: x0)
        }

        // inference_stream: shift the levels, one forward over all of them, re-noise each to its next step.
        let chain = (block - 1) % chains
        var levels = batches[chain]
        defer { batches[chain] = levels }
        levels.insert((x, nextFrame, block), at: 0)
        levels.removeLast()
        let segments = levels.enumerated().map {
            WanDiT.LevelSegment(frames: 1, startFrame: $0.element.startFrame, timestep: Float(steps[$0.offset]),
                                row: $0.offset)
        }
        let x0 = try denoise(try model.backend.concat(levels.map(\.latents), axis: 0), segments: segments, steps: steps)
        let finished = try Self.advance(&levels, x0: x0, steps: steps, call: block) {
            try self.renoise($0, to: $1, draw: $2, frames: 1)
        }
        lastStep = StreamV2VStep(block: block, noiseScale: s, timesteps: steps, positions: segments.map(\.startFrame),
                                 refreshes: cache.takeRefreshes())
        return finished
    }

    /// The eviction queues of every layer and cache row (slot end positions in frames, next target first).
    public var evictionQueues: [[[Int]]] {
        (0..<cache.layers).map { l in (0..<cache.activeRows).map { cache.evictionQueue(layer: l, row: $0) } }
    }

    // MARK: - Steps

    /// `eps * s + z * (1 - s)` in float32 (`inference.py:173-177`), in the model's dtype.
    private func noisy(_ z: Tensor, scale s: Double, draw: StreamNoiseDraw, frames: Int) throws -> Tensor {
        let be = model.backend
        let eps = try noise.draw(draw, frames: frames, shape: latentShape, on: be)
        let mixed = try be.axpby(Float(s), try be.cast(eps, to: .f32), Float(1 - s), try be.cast(z, to: .f32))
        return try be.cast(mixed, to: model.dtype)
    }

    /// One forward over `x [S, H, W, C]` and x0 = x - sigma(t) v per segment (`wan_wrapper.py:174-198`;
    /// the reference in float64, here in the model's dtype as LongLive's path).
    private func denoise(_ x: Tensor, segments: [WanDiT.LevelSegment], steps: [Int]) throws -> Tensor {
        let v = try model.forward(levels: x, segments: segments, prompt: prompt, cache: cache)
        return try Self.x0(x, velocity: v, segments: segments, steps: steps, sigmaOfStep: sigmaOfStep)
    }

    /// The levels after a forward made `x0` (level 0 first): each re-noised to its next step, the last kept
    /// clean and returned when it holds a block (shared with the block pipeline's last stage).
    static func advance(_ levels: inout [(latents: Tensor, startFrame: Int, block: Int)], x0: Tensor, steps: [Int],
                        call: Int, renoise: (Tensor, Int, StreamNoiseDraw) throws -> Tensor) throws -> StreamV2VBlock? {
        var finished: StreamV2VBlock?
        for i in levels.indices {
            let level = try x0.backend.slice(x0, axis: 0, start: i, length: 1)
            if i + 1 < levels.count {
                levels[i].latents = try renoise(level, steps[i + 1], .renoise(block: call, level: i))
            } else if levels[i].block > 0 {
                levels[i].latents = level
                finished = StreamV2VBlock(index: levels[i].block, latents: level)
            }
        }
        return finished
    }

    /// x0 = x - sigma(t) v per segment, from a forward's velocity `v` over `x` (`wan_wrapper.py:174-198`).
    static func x0(_ x: Tensor, velocity v: Tensor, segments: [WanDiT.LevelSegment], steps: [Int],
                   sigmaOfStep: [Float]) throws -> Tensor {
        let be = v.backend
        if segments.count == 1 { return try be.axpby(1, try be.cast(x, to: v.dtype), -sigmaOfStep[steps[0]], v) }
        var parts: [Tensor] = []
        var offset = 0
        for (segment, t) in zip(segments, steps) {
            let xs = try be.slice(x, axis: 0, start: offset, length: segment.frames)
            let vs = try be.slice(v, axis: 0, start: offset, length: segment.frames)
            parts.append(try be.axpby(1, try be.cast(xs, to: v.dtype), -sigmaOfStep[t], vs))
            offset += segment.frames
        }
        return try be.concat(parts, axis: 0)
    }

    /// `(1 - sigma(t)) x0 + sigma(t) eps` with fresh noise (`flow_match.py:58-73`).
    private func renoise(_ x0: Tensor, to t: Int, draw: StreamNoiseDraw, frames: Int) throws -> Tensor {
        let be = model.backend
        let eps = try noise.draw(draw, frames: frames, shape: latentShape, on: be)
        let s = sigmaOfStep[t]
        return try be.axpby(1 - s, x0, s, try be.cast(eps, to: x0.dtype))
    }

    private func checkLatents(_ z: Tensor, what: String, frames: Int?) throws -> Int {
        let (h, w, c) = latentShape
        guard z.rank == 4, z.shape[1] == h, z.shape[2] == w, z.shape[3] == c, z.shape[0] >= 1,
              frames == nil || z.shape[0] == frames else {
            throw ReelError.input("\(what) must be [\(frames.map(String.init) ?? "frames"), \(h), \(w), \(c)] "
                                  + "(channel-last latents), got \(z.shape)")
        }
        guard z.backend === model.backend else {
            throw ReelError.input("\(what) live on another backend than the model's")
        }
        return z.shape[0]
    }
}
