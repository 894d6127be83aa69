import ReelCore

/// The causal Wan2.1 DiT (LongLive `wan/modules/causal_model.py`), written once against `Backend`.
///
/// Latents are channel-last, `[F, H, W, C]` for F latent frames of H x W with C = 16 channels.
/// Tokens are ordered (frame, row, column) after 2x2 patching, `tokensPerFrame = H/2 * W/2`.
///
/// The layers are small typed modules: `Linear`, the norms, `FeedForward` and `Modulation`
/// (WanDiT+Layers), `Attention` (WanDiT+Attention), the embeddings and `Head` (WanDiT+Embeddings) and
/// `Block` (WanDiT+Block), bound by Wan's key names in `WanDiTWeights` (layouts: WanDiT+Loading).
public final class WanDiT: @unchecked Sendable {
    public let config: WanDiTConfig
    public let backend: any Backend
    let weights: WanDiTWeights
    /// Storage type of the weights and activations.
    public var dtype: DType { weights.dtype }
    /// A pass over more than this many latent frames runs each layer on at most this many frames at a
    /// time (after writing every frame's keys and values), so that its activations are those of a
    /// pass over `chunkFrames` frames; the result is the same. The default, 3, is a LongLive block:
    /// generation never chunks, and the 9-frame KV-recache after a prompt switch (the peak of device
    /// memory) runs as 3 chunks. Chunks are whole frames: RoPE positions and modulation are per
    /// frame. 0: never chunk.
    public var chunkFrames = 3
    /// How the caches this model makes (`makeCache`) store keys and values: the model's dtype (the
    /// default), or FP8 (`--kv-cache fp8`). LongLive 2.0's and StreamDiffusionV2's caches take only the former.
    public var kvCache = KVCacheStorage.model
    /// How the self-attention over the KV cache computes: in the model's dtype (the default), or FP8
    /// (`--attention fp8`, `Backend.fp8Attention`). Cross-attention to the prompt stays in the model's dtype.
    /// Set on a sequence-parallel model, it is set on every replica.
    public var attentionPrecision = AttentionPrecision.model {
        didSet { parallelism?.replicas.forEach { $0.attentionPrecision = attentionPrecision } }
    }
    /// The copy stream of the model's device when the caches this model makes (`makeCache`) keep keys and values
    /// in host memory (`--gpu-memory`, `ResidencyPlan.kvCacheOnHost`; `WanKVCache.init(hostCopier:)`); nil: on the
    /// device.
    public var hostKVCache: (any HostToDeviceCopying)?
    /// With `hostKVCache`: the first layer whose K/V live in host memory; layers before it keep theirs on the
    /// device (`ResidencyPlan.kvDeviceLayers`).
    public var hostKVCacheFrom = 0
    /// The ranks this model is spread over (`sequenceParallel(_:communicator:)`, `loadTensorParallel`); nil on
    /// one device.
    public let parallelism: (any DiTParallelism)?
    /// The blocks streamed from host memory (`streamingBlocks(from:slots:)`); nil when every block is resident.
    let streamer: BlockStreamer?

    init(config: WanDiTConfig, weights: WanDiTWeights, backend: any Backend, parallelism: (any DiTParallelism)? = nil,
         streamer: BlockStreamer? = nil) {
        self.config = config
        self.weights = weights
        self.backend = backend
        self.parallelism = parallelism
        self.streamer = streamer
    }

    /// The same model with the blocks' `layers` quantized to `format`, FP8 E4M3 or INT8 (W8A8): weights
    /// per output channel now, inputs per token as they are made (LightX2V's channel-wise FP8 weights with
    /// dynamic per-token activations; SmoothQuant's W8A8 INT8 without its smoothing; an adaLN before a
    /// quantized layer writes quantized rows directly). Outputs move away from the bf16 model's by the
    /// codes' rounding (FP8: 3 mantissa bits; INT8: a step of max|row| / 127); the parity fixtures hold
    /// the bf16 model. INT8 is for GPUs without FP8 (compute capability 8.0 to 8.6: Ampere).
    ///
    /// `.feedForward` (the default) keeps the attention projections in the model's dtype: at the 1.3B's
    /// 1536-wide shapes an FP8 GEMM saves about what quantizing its input costs, while FP8 q/k/v raised the
    /// video's error on the LongLive fixture by half for no end-to-end gain (docs/perf-notes.md, session 6).
    /// `.allLinears` also quantizes every attention projection (self and cross, the prompt's keys and values
    /// included): the weights' memory halves again (the 14B's attention is 8.4 of its 14 billion), at the
    /// error `LongLiveParityTests` measures. The embeddings and the head stay in the model's dtype.
    public func quantized(_ quantization: LinearQuantization) throws -> WanDiT {
        if let parallelism {
            // Slicing a quantized layer's input columns changes its per-row scales: not the one-device model.
            try require(parallelism.scheme == .sequence, "WanDiT.quantized",
                        "\(quantization) is not written for tensor parallelism (its row-parallel layers would "
                        + "quantize each rank's share of a row apart): use --parallelism sequence")
            return try parallelism.map { try $0.quantized(quantization) }.withKVCache(kvCache)
        }
        if let current = self.quantization {
            try require(current == quantization, "WanDiT.quantized",
                        "the model is already quantized (\(current)); load it again for \(quantization)")
            return self
        }
        try require(streamer == nil, "WanDiT.quantized", "quantize before streaming blocks (streamingBlocks)")
        let model = WanDiT(config: config, weights: try weights.quantized(quantization), backend: backend)
        model.chunkFrames = chunkFrames
        model.kvCache = kvCache
        model.hostKVCache = hostKVCache
        model.hostKVCacheFrom = hostKVCacheFrom
        model.attentionPrecision = attentionPrecision
        return model
    }

    /// `quantized(.fp8(layers))`.
    public func quantizedFP8(_ layers: QuantizedLayers = .feedForward) throws -> WanDiT { try quantized(.fp8(layers)) }

    /// This model (no copy) with `kvCache` set: the caches it makes store keys and values as `storage`.
    @discardableResult
    public func withKVCache(_ storage: KVCacheStorage) -> WanDiT {
        kvCache = storage
        return self
    }

    /// Which of the blocks' layers are quantized and to what, nil for none.
    public var quantization: LinearQuantization? {
        guard let b = weights.blocks.first, let format = b.ffn.up.format else { return nil }
        return LinearQuantization(format: format, layers: b.selfAttention.q.quantized != nil ? .allLinears : .feedForward)
    }

    /// The same weights with cross-attention over `textLength` rows (prompt tokens, then zero rows).
    /// Wan pads to 512; a model trained with another length records it (`text_len` metadata).
    public func withTextLength(_ textLength: Int) -> WanDiT {
        if let parallelism { return parallelism.map { $0.withTextLength(textLength) }.withKVCache(kvCache) }
        var c = config
        c.textLength = textLength
        let model = WanDiT(config: c, weights: weights, backend: backend, streamer: streamer)
        model.chunkFrames = chunkFrames
        model.kvCache = kvCache
        model.hostKVCache = hostKVCache
        model.hostKVCacheFrom = hostKVCacheFrom
        model.attentionPrecision = attentionPrecision
        return model
    }

    /// Keys and values of an attention, each `[1, L, heads, headDim]`.
    struct KeysValues {
        let keys: Tensor
        let values: Tensor
    }

    /// Per-prompt state: the projected text context and every layer's cross-attention K/V.
    /// LongLive recomputes these after a prompt switch; computing them once per prompt is equal.
    public final class PromptContext: @unchecked Sendable {
        /// `[layers]` of the cross-attention's keys and values, each `[1, textLength, heads, headDim]`.
        let crossKV: [KeysValues]
        /// Rank r's context of a model spread over ranks (on rank r's stream; with sequence parallelism
        /// rank 0's is this one's, with tensor parallelism each holds its rank's heads); empty on one device.
        let ranks: [PromptContext]
        /// The scheme of the model that made `ranks` (nil on one device).
        let scheme: DiTParallelScheme?
        /// Whether the prompt opens a new shot (LongLive 2.0's scene cut: the prompt starts with "The scene
        /// transitions. "); LongLive 1.0's schedule ignores it.
        public let startsShot: Bool
        init(crossKV: [KeysValues], ranks: [PromptContext] = [], scheme: DiTParallelScheme? = nil,
             startsShot: Bool = false) {
            self.crossKV = crossKV; self.ranks = ranks; self.scheme = scheme; self.startsShot = startsShot
        }

        /// The same context marked as opening a shot (or not); the keys and values are shared.
        public func startingShot(_ value: Bool = true) -> PromptContext {
            value == startsShot ? self : PromptContext(crossKV: crossKV, ranks: ranks, scheme: scheme, startsShot: value)
        }
    }

    /// Projects a prompt embedding (`[tokens, textDim]`, tokens <= textLength, rows past the real tokens
    /// zero) and precomputes every layer's cross-attention keys and values.
    public func encodePrompt(_ embedding: Tensor) throws -> PromptContext {
        if let parallelism { return try parallelism.encodePrompt(embedding) }
        let c = try textContext(embedding)                                  // [textLength, dim]
        var crossKV: [KeysValues] = []
        try forEachBlock { _, block in crossKV.append(try block.crossAttention.promptKeysValues(c)) }
        return PromptContext(crossKV: crossKV)
    }

    /// The prompt embedding zero-padded to the text length and projected: `[textLength, dim]`.
    func textContext(_ embedding: Tensor) throws -> Tensor {
        let be = backend
        try require(embedding.rank == 2 && embedding.shape[1] == config.textDim, "WanDiT.encodePrompt",
                    "expected [tokens, \(config.textDim)], got \(embedding.shape)")
        try require(embedding.shape[0] <= config.textLength, "WanDiT.encodePrompt",
                    "\(embedding.shape[0]) tokens exceed the text length \(config.textLength)")
        // Reference: zero-pad to text_len, and cross-attention attends to all of them (no mask).
        var ctx = embedding
        if embedding.shape[0] < config.textLength {
            let pad = try be.zeros([config.textLength - embedding.shape[0], config.textDim], dtype: embedding.dtype)
            ctx = try be.concat([embedding, pad], axis: 0)
        }
        ctx = try be.cast(ctx, to: weights.dtype)
        return try weights.textEmbedding(ctx)
    }

    /// What a forward pass does with the self-attention cache.
    public struct CacheAccess: Sendable {
        /// Absolute index of the first latent frame of the input.
        public var startFrame: Int
        /// Compute the output (false for passes that only refresh the cache: its last layer's
        /// attention output, FFN and the head are skipped).
        public var needsOutput: Bool
        public init(startFrame: Int, needsOutput: Bool = true) {
            self.startFrame = startFrame; self.needsOutput = needsOutput
        }
    }

    /// One forward pass over `latents [F, H, W, C]` at timestep `t` (the same for all F frames),
    /// writing the frames' keys and values into `cache` and attending over what the cache holds.
    /// Returns the flow velocity `[F, H, W, C]`, or nil when `access.needsOutput` is false.
    public func forward(_ latents: Tensor, timestep t: Float, prompt: PromptContext,
                        cache: WanKVCache, access: CacheAccess) throws -> Tensor? {
        if let parallelism {
            return try parallelism.forward(latents, timestep: t, prompt: prompt, cache: cache, access: access)
        }
        let c = config
        try require(latents.rank == 4 && latents.shape[3] == c.inChannels, "WanDiT.forward",
                    "expected latents [F, H, W, \(c.inChannels)], got \(latents.shape)")
        let (frames, height, width) = (latents.shape[0], latents.shape[1], latents.shape[2])
        try require(height % c.patch == 0 && width % c.patch == 0, "WanDiT.forward",
                    "latent size \(height)x\(width) is not a multiple of the patch \(c.patch)")
        let (gh, gw) = (height / c.patch, width / c.patch)
        try require(gh * gw == cache.tokensPerFrame, "WanDiT.forward",
                    "latents give \(gh * gw) tokens per frame, the cache was made for \(cache.tokensPerFrame)")
        let grid = PatchGrid(frames: frames, height: gh, width: gw)

        var x = try weights.patchEmbedding(latents, grid: grid)                  // [1, L, dim]
        // Time embedding: sinusoid in float64 (reference), then the two MLPs.
        let (e, e0) = try weights.timeEmbedding(t, frames: frames)               // [F, dim], [6, F, dim]
        let rope = RoPEGrid(frames: frames, height: gh, width: gw, frameOffset: access.startFrame)
        let written = cache.plan(startFrame: access.startFrame, frames: frames)

        try forEachBlock { index, block in
            let isLast = index == weights.blocks.count - 1
            try cache.beginLayer(index, plan: written)
            x = try blockForward(block, layer: index, x: x, e0: e0, grid: grid, rope: rope, prompt: prompt,
                                 cache: cache, written: written, skipOutput: isLast && !access.needsOutput)
            try cache.endLayer(index, plan: written)
        }
        cache.commit(written)
        guard access.needsOutput else { return nil }
        // Head: modulation from the un-projected time embedding e.
        return try weights.head(x, timeEmbedding: e, grid: grid)
    }

    /// A self-attention cache for this model (sink + rolling window of `tokensPerFrame`-token frames),
    /// sharded by heads over the ranks of a model spread over devices (either scheme), stored as `storage` (default: `kvCache`).
    public func makeCache(tokensPerFrame: Int, sinkFrames: Int, windowFrames: Int, dtype: DType? = nil,
                          storage: KVCacheStorage? = nil) throws -> WanKVCache {
        let c = config
        if let parallelism {
            return try WanKVCache(shardedOver: parallelism.communicator.streams, layers: c.layers,
                                  tokensPerFrame: tokensPerFrame, heads: c.heads, headDim: c.headDim,
                                  sinkFrames: sinkFrames, windowFrames: windowFrames, dtype: dtype ?? self.dtype,
                                  storage: storage ?? kvCache)
        }
        return try WanKVCache(backend: backend, layers: c.layers, tokensPerFrame: tokensPerFrame, heads: c.heads,
                              headDim: c.headDim, sinkFrames: sinkFrames, windowFrames: windowFrames,
                              dtype: dtype ?? self.dtype, storage: storage ?? kvCache, hostCopier: hostKVCache,
                              hostFrom: hostKVCacheFrom)
    }
}

/// Which of a DiT's block layers `WanDiT.quantized` quantizes (`--fp8-layers`, for `--fp8` and `--int8`).
public enum QuantizedLayers: String, Sendable, CaseIterable {
    /// The feed-forward network's two layers (the default of `--fp8` and `--int8`).
    case feedForward = "ffn"
    /// Every linear of the blocks: the FFN and the self- and cross-attention projections.
    case allLinears = "all"
}

/// The code type of a DiT's quantized linears.
public enum QuantizedFormat: String, Sendable, CaseIterable {
    /// FP8 E4M3 (`--fp8`): compute capability 8.9 or newer (Ada, Hopper, Blackwell).
    case fp8
    /// Symmetric INT8, codes in [-127, 127] (`--int8`): compute capability 8.0 or newer (Ampere).
    case int8

    /// The codes' storage type.
    public var dtype: DType { self == .int8 ? .int8 : .fp8e4m3 }

    public init?(dtype: DType) {
        switch dtype {
        case .fp8e4m3: self = .fp8
        case .int8: self = .int8
        default: return nil
        }
    }

    /// "FP8" or "INT8", as reports name it.
    public var name: String { rawValue.uppercased() }
}

/// Which of a DiT's block linears are quantized, and to what (`WanDiT.quantized`; `--fp8` or `--int8`
/// with `--fp8-layers`).
public struct LinearQuantization: Sendable, Hashable, CustomStringConvertible {
    public var format: QuantizedFormat
    public var layers: QuantizedLayers

    public init(format: QuantizedFormat, layers: QuantizedLayers) { self.format = format; self.layers = layers }

    public static func fp8(_ layers: QuantizedLayers) -> LinearQuantization { .init(format: .fp8, layers: layers) }
    public static func int8(_ layers: QuantizedLayers) -> LinearQuantization { .init(format: .int8, layers: layers) }

    /// "INT8 FFN", "FP8 all".
    public var description: String { "\(format.name) \(layers == .feedForward ? "FFN" : "all")" }
}
