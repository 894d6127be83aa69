import ReelCore
import ReelModels

/// LongLive 2.0's streaming schedule (NVlabs/LongLive main, `configs/inference.yaml` read by
/// `pipeline/causal_diffusion_inference.py`), beside LongLive 1.0's `StreamingSchedule`.
public struct LongLive2Schedule: Codable, Sendable, Equatable {
    /// Latent frames generated together (`num_frame_per_block`: 8).
    public var framesPerBlock: Int
    /// Frames of the self-attention buffer, which is also the attention window (`local_attn_size`: 32).
    public var attentionFrames: Int
    /// Frames kept at the buffer's front (`sink_size`: 8).
    public var sinkFrames: Int
    /// UniPC steps (`sampling_steps`: 4) and their timestep shift (`timestep_shift`: 5).
    public var steps: Int
    public var shift: Double
    /// The multi-shot sink (`multi_shot_sink: true`): the first `sinkFrames` frames anchored for good and each
    /// scene cut's block pinned as the shot's sink.
    public var multiShotSink: Bool
    /// RoPE frames added per shot (`multi_shot_rope_offset`: 8; absolute RoPE only).
    public var shotRoPEOffset: Int
    /// RoPE relative to the buffer (`use_relative_rope`; off in the shipped configs).
    public var relativeRoPE: Bool
    /// A scene cut's clean pass starts from an emptied buffer (`shot_clean_recache`; off in the shipped configs):
    /// only the global sink is kept, the previous shot's frames and its pinned sink are forgotten, so the new shot's
    /// first block is cached against the global sink alone (`_zero_kv_data`, pipeline l. 632-637). Needs the
    /// multi-shot sink (a scene cut is only recognised with it).
    public var shotCleanRecache: Bool

    public init(framesPerBlock: Int = 8, attentionFrames: Int = 32, sinkFrames: Int = 8, steps: Int = 4,
                shift: Double = 5, multiShotSink: Bool = true, shotRoPEOffset: Int = 8, relativeRoPE: Bool = false,
                shotCleanRecache: Bool = false) {
        self.framesPerBlock = framesPerBlock; self.attentionFrames = attentionFrames; self.sinkFrames = sinkFrames
        self.steps = steps; self.shift = shift; self.multiShotSink = multiShotSink
        self.shotRoPEOffset = shotRoPEOffset; self.relativeRoPE = relativeRoPE; self.shotCleanRecache = shotCleanRecache
    }

    /// configs/inference.yaml (and inference_i2v.yaml, which adds the image).
    public static let longLive2 = LongLive2Schedule()

    /// The prefix that marks a prompt as a new shot's first (`_is_shot_boundary`, pipeline l. 974-987, with
    /// `utils/dataset.py`'s `DEFAULT_SCENE_CUT_PREFIX`): `PromptEncoder` marks such contexts `startsShot`.
    public static let sceneCutPrefix = "The scene transitions. "

    /// Frames anchored for good (`global_sink_size`).
    public var globalSinkFrames: Int { multiShotSink ? sinkFrames : 0 }

    public func validate() throws {
        guard framesPerBlock > 0, steps > 0, shift > 0 else {
            throw ReelError.input("frames per block, steps and shift must be positive")
        }
        if shotCleanRecache && !(multiShotSink && sinkFrames > 0) {
            throw ReelError.input("the shot clean recache needs the multi-shot sink (a sink of at least one frame): "
                                  + "without it no prompt is a scene cut")
        }
        // The buffer must take a block after its protected prefix (sink plus a pinned shot sink).
        guard sinkFrames >= 0, attentionFrames >= 2 * sinkFrames + framesPerBlock else {
            throw ReelError.input("a \(attentionFrames)-frame window cannot hold a sink of \(sinkFrames), "
                                  + "a pinned shot sink and a block of \(framesPerBlock)")
        }
    }
}

/// LongLive 2.0's generation loop (`CausalDiffusionInferencePipeline._inference_inner`): per block a fresh UniPC
/// sampler over the KV cache, then a clean pass at t = 0 with the block's prompt. With classifier-free guidance
/// (`guidance_scale` other than 1; the shipped configs leave it at 1) every forward runs twice, the second with the
/// negative prompt over a cache of its own (`kv_cache_neg`), and the velocity is `u + scale (c - u)`; the clean pass,
/// the pin and the clean recache apply to both caches. A block's
/// prompt is simply used (cross-attention only): 2.0 has no KV-recache. A scene cut (a prompt that starts a new
/// shot; the reference marks it with the prefix "The scene transitions. ") advances the shot's RoPE offset and,
/// after its clean pass, pins the block as the shot's sink. With an image, the first latent frame is the image's
/// latent, held clean at t = 0 through the first block (`independent_first_frame` with an `initial_latent`).
///
/// The clean pass of a block is deferred to the start of the next one (as `StreamingGenerator` does for 1.0): its
/// only output is the cache, which the next block's first forward reads, so the block's latents can leave for
/// decoding before it. The stream runs the same ops in the same order (clean pass, pin, next block's steps), so the
/// latents are the same bit for bit; `defersCleanPass = false` runs it before returning, as the reference's loop.
public final class LongLive2Generator: @unchecked Sendable {
    public let model: WanDiT
    public let schedule: LongLive2Schedule
    public let latentShape: (h: Int, w: Int, c: Int)
    let cache: LongLive2KVCache
    /// Classifier-free guidance: the scale and the negative prompt's context (nil: none, the shipped configs).
    public let guidance: Guidance?
    /// The negative prompt's cache (`kv_cache_neg`), with guidance only.
    let negativeCache: LongLive2KVCache?
    let noise: any NoiseSource
    /// The image's latent `[1, H, W, C]` for the first frame, until the first block is made.
    private var image: Tensor?
    private var nextFrame = 0
    private var blockIndex = 0
    private var shot = 0
    /// Run the image frame at t = 0 in the first block, as TI2V conditioning does (the reference); false gives it
    /// the step's timestep like the other frames, a wrong variant the parity tests must catch.
    public var imageAtTimestepZero = true
    /// Leave each block's clean pass to the next block's start (`runPendingCleanPass`); false runs it at once.
    public var defersCleanPass = true
    /// The last block's clean pass, not yet run: its latents, first frame, RoPE, prompt and whether it is pinned.
    private var pendingClean: (latents: Tensor, start: Int, rope: WanDiT.LongLive2RoPE, prompt: WanDiT.PromptContext,
                               pins: Bool)?

    /// Classifier-free guidance (`inference.guidance_scale`, `inference.negative_prompt`).
    public struct Guidance: Sendable {
        public var scale: Float
        public var negative: WanDiT.PromptContext
        public init(scale: Float, negative: WanDiT.PromptContext) { self.scale = scale; self.negative = negative }
    }

    public init(model: WanDiT, latentHeight: Int, latentWidth: Int, schedule: LongLive2Schedule = .longLive2,
                noise: any NoiseSource, image: Tensor? = nil, cacheDType: DType? = nil, guidance: Guidance? = nil) throws {
        try schedule.validate()
        if let guidance, !guidance.scale.isFinite {
            throw ReelError.input("the guidance scale must be a finite number, got \(guidance.scale)")
        }
        if model.kvCache != .model {
            throw ReelError.input("--kv-cache \(model.kvCache.rawValue) is LongLive 1.0's ring cache only; "
                                  + "LongLive 2.0's cache (LongLive2KVCache) stores keys and values in the model's "
                                  + "dtype: leave --kv-cache at bf16")
        }
        let c = model.config
        try c.checkLatentSize(height: latentHeight, width: latentWidth)
        if let image {
            try require(image.shape == Shape([1, latentHeight, latentWidth, c.inChannels]), "LongLive2Generator",
                        "the image latent must be [1, \(latentHeight), \(latentWidth), \(c.inChannels)], got \(image.shape)")
        }
        self.model = model
        self.schedule = schedule
        self.latentShape = (latentHeight, latentWidth, c.inChannels)
        self.noise = noise
        self.image = try image.map { try model.backend.cast($0, to: model.dtype) }
        func makeCache() throws -> LongLive2KVCache {
            try LongLive2KVCache(backend: model.backend, layers: c.layers,
                                 tokensPerFrame: (latentHeight / c.patch) * (latentWidth / c.patch),
                                 heads: c.heads, headDim: c.headDim, frames: schedule.attentionFrames,
                                 sinkFrames: schedule.sinkFrames, globalSinkFrames: schedule.globalSinkFrames,
                                 dtype: cacheDType ?? model.dtype)
        }
        cache = try makeCache()
        // The reference guides whenever the scale is not 1 (`use_cfg = guidance_scale != 1.0`).
        self.guidance = guidance.flatMap { $0.scale == 1 ? nil : $0 }
        negativeCache = self.guidance == nil ? nil : try makeCache()
    }

    /// Bytes of the self-attention caches (two with guidance).
    public var cacheBytes: Int { cache.byteCount + (negativeCache?.byteCount ?? 0) }

    /// Index of the next block's first latent frame.
    public var currentFrame: Int { nextFrame }

    /// Generates the next block's clean latents `[framesPerBlock, H, W, C]` under `prompt`; `sceneCut` marks the
    /// first block of a new shot (ignored on the first block, as the reference's `_is_shot_boundary`).
    /// The block's clean pass has not run when this returns (unless `defersCleanPass` is off): the next call runs
    /// it first, or `runPendingCleanPass()`.
    public func nextBlock(prompt: WanDiT.PromptContext, sceneCut: Bool = false) throws -> Tensor {
        try runPendingCleanPass()
        let be = model.backend, start = nextFrame, count = schedule.framesPerBlock
        let cut = sceneCut && blockIndex > 0
        if cut && schedule.shotRoPEOffset != 0 { shot += 1 }
        let rope: WanDiT.LongLive2RoPE = schedule.relativeRoPE ? .relative
            : .absolute(shotOffset: shot * schedule.shotRoPEOffset)
        let conditioning = image
        image = nil

        var solver = try FlowUniPCSolver(steps: schedule.steps, shift: schedule.shift)
        var x = try be.cast(try noise.initial(startFrame: start, count: count, shape: latentShape, on: be), to: model.dtype)
        for t in solver.timesteps {
            var timesteps = [Float](repeating: t, count: count)
            if let conditioning {
                // _overwrite_i2v_context / _zero_i2v_context_timestep: the image frame, clean, at t = 0.
                x = try withFirstFrame(conditioning, x)
                if imageAtTimestepZero { timesteps[0] = 0 }
            }
            var v = try model.forwardLongLive2(x, timesteps: timesteps, startFrame: start, rope: rope, prompt: prompt,
                                               cache: cache)
            if let guidance, let negativeCache {
                let u = try model.forwardLongLive2(x, timesteps: timesteps, startFrame: start, rope: rope,
                                                   prompt: guidance.negative, cache: negativeCache)
                v = try be.axpby(guidance.scale, try be.binary(.sub, v, u), 1, u)
            }
            x = try solver.step(velocity: v, sample: x)
            if let conditioning { x = try withFirstFrame(conditioning, x) }
        }
        // _is_scene_cut: a shot boundary counts only with the multi-shot sink and a sink.
        pendingClean = (x, start, rope, prompt, cut && schedule.multiShotSink && schedule.sinkFrames > 0)
        if !defersCleanPass { try runPendingCleanPass() }
        nextFrame += count
        blockIndex += 1
        return x
    }

    /// Forgets the pending clean pass (a wrong variant for tests: the block's keys are never written).
    func dropPendingCleanPass() { pendingClean = nil }

    /// Whether the last block's clean pass is still to run.
    public var hasPendingCleanPass: Bool { pendingClean != nil }

    /// The last block's clean pass, if it has not run (pipeline l. 620-664): its keys and values from its final
    /// latents at t = 0 with its own prompt and RoPE, then, for a scene cut, the block pinned as the shot's sink.
    /// With `shotCleanRecache` a scene cut's pass first empties the buffer down to the global sink.
    public func runPendingCleanPass() throws {
        guard let p = pendingClean else { return }
        pendingClean = nil
        var passes = [(cache, p.prompt)]
        if let guidance, let negativeCache { passes.append((negativeCache, guidance.negative)) }
        for (c, prompt) in passes {
            if p.pins && schedule.shotCleanRecache { c.keepOnlyGlobalSink(nextFrame: p.start) }
            _ = try model.forwardLongLive2(p.latents, timesteps: [Float](repeating: 0, count: p.latents.shape[0]),
                                           startFrame: p.start, rope: p.rope, prompt: prompt, cache: c)
        }
        if p.pins { for (c, _) in passes { c.pinNewest(blockFrames: p.latents.shape[0]) } }
    }

    /// `x` `[F, H, W, C]` with its first frame replaced by `frame` `[1, H, W, C]`.
    private func withFirstFrame(_ frame: Tensor, _ x: Tensor) throws -> Tensor {
        let be = model.backend
        return try be.concat([frame, try be.slice(x, axis: 0, start: 1, length: x.shape[0] - 1)], axis: 0)
    }
}
