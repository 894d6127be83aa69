import ReelCore

// A forward pass over several denoising levels at once (StreamDiffusionV2's stream batch,
// chenfengxu714/StreamDiffusionV2 `models/wan/causal_model.py` `_forward_inference` with a batch of
// levels): each level has its own timestep, RoPE position and cache row. The levels are laid out as
// consecutive frames of one pass, so every per-token layer (projections, norms, FFN, cross-attention,
// head) runs once over all of them; only RoPE, the cache and self-attention run per level.

extension WanDiT {
    /// One level of a level-batched pass: `frames` consecutive latent frames denoised at `timestep`,
    /// placed at latent frame `startFrame` (RoPE and cache position), stored into and attending over
    /// row `row` of the cache.
    public struct LevelSegment: Sendable, Equatable {
        public var frames: Int
        public var startFrame: Int
        public var timestep: Float
        public var row: Int
        public init(frames: Int, startFrame: Int, timestep: Float, row: Int) {
            self.frames = frames; self.startFrame = startFrame; self.timestep = timestep; self.row = row
        }
    }

    /// One forward pass over `latents [S, H, W, C]`, the frames of `segments` in order (S = the sum of
    /// their frames), each segment with its own timestep, position and row of `cache`. Returns the flow
    /// velocity `[S, H, W, C]`.
    public func forward(levels latents: Tensor, segments: [LevelSegment], prompt: PromptContext,
                        cache: SinkRefreshKVCache) throws -> Tensor {
        guard parallelism == nil else {
            throw ReelError.unsupported(backend: backend.name, op: "WanDiT.forward(levels:)",
                                        message: "the stream-batch pass runs on one device, not spread over devices")
        }
        let c = config
        try require(latents.rank == 4 && latents.shape[3] == c.inChannels, "WanDiT.forward(levels:)",
                    "expected latents [frames, H, W, \(c.inChannels)], got \(latents.shape)")
        return try forwardStage(levels: latents, latentHeight: latents.shape[1], latentWidth: latents.shape[2],
                                segments: segments, prompt: prompt, cache: cache, embeds: true, head: true)
    }

    /// A stage of a level-batched pass over this model's layers (the whole pass when `embeds` and `head`):
    /// with `embeds`, `input` is the latents `[S, H, W, C]` and the patch embedding runs first, else it is the
    /// hidden state `[1, S * F, dim]` a previous stage returned; with `head` the output is the velocity
    /// `[S, H, W, C]`, else the hidden state after this model's last layer. The block pipeline
    /// (`BlockPipelinedStreamBatch`) loads each device's contiguous range of layers as a model of its own
    /// (`loadLayers`) and chains these stages; the time embedding is recomputed on every stage (the same ops,
    /// so the same values). `layerDone` is called after each layer (for timing).
    public func forwardStage(levels input: Tensor, latentHeight height: Int, latentWidth width: Int,
                             segments: [LevelSegment], prompt: PromptContext, cache: SinkRefreshKVCache,
                             embeds: Bool, head: Bool, layerDone: ((Int) throws -> Void)? = nil) throws -> Tensor {
        guard parallelism == nil else {
            throw ReelError.unsupported(backend: backend.name, op: "WanDiT.forward(levels:)",
                                        message: "the stream-batch pass runs on one device, not spread over devices")
        }
        let c = config
        let frames = segments.reduce(0, { $0 + $1.frames })
        try require(!segments.isEmpty && segments.allSatisfy({ $0.frames > 0 }), "WanDiT.forward(levels:)",
                    "segments of \(segments.map(\.frames)) frames")
        try require(height % c.patch == 0 && width % c.patch == 0, "WanDiT.forward(levels:)",
                    "latent size \(height)x\(width) is not a multiple of the patch \(c.patch)")
        let (gh, gw) = (height / c.patch, width / c.patch)
        if embeds {
            try require(input.shape[0] == frames, "WanDiT.forward(levels:)",
                        "segments of \(segments.map(\.frames)) frames do not cover the \(input.shape[0]) latent frames")
        } else {
            try require(input.shape == [1, frames * gh * gw, c.dim], "WanDiT.forwardStage",
                        "expected a hidden state [1, \(frames * gh * gw), \(c.dim)], got \(input.shape)")
        }
        try require(gh * gw == cache.tokensPerFrame && cache.layers == c.layers && cache.heads == c.heads
                    && cache.headDim == c.headDim, "WanDiT.forward(levels:)",
                    "the cache (\(cache.layers) layers, \(cache.tokensPerFrame) tokens per frame, \(cache.heads) heads) "
                    + "does not fit the model (\(c.layers) layers, \(gh * gw) tokens per frame, \(c.heads) heads)")
        try require(prompt.crossKV.count == c.layers, "WanDiT.forwardStage",
                    "the prompt was encoded for \(prompt.crossKV.count) layers, the model has \(c.layers): "
                    + "encode it with this model")
        let grid = PatchGrid(frames: frames, height: gh, width: gw)

        var x = embeds ? try weights.patchEmbedding(input, grid: grid) : input     // [1, S*F, dim]
        // Reference: the time embedding per (level, frame) (`t` is [levels, frames]).
        let (e, e0) = try weights.timeEmbedding(perFrame: segments.flatMap {
            [Float](repeating: $0.timestep, count: $0.frames)
        })                                                                          // [S, dim], [6, S, dim]
        try forEachBlock { index, block in
            x = try levelBlockForward(block, layer: index, x: x, e0: e0, grid: grid, segments: segments,
                                      prompt: prompt, cache: cache)
            try layerDone?(index)
        }
        return head ? try weights.head(x, timeEmbedding: e, grid: grid) : x
    }

    /// One transformer block over the levels of a pass (the same layers as `blockForward`).
    func levelBlockForward(_ b: Block, layer: Int, x: Tensor, e0: Tensor, grid: PatchGrid,
                           segments: [LevelSegment], prompt: PromptContext, cache: SinkRefreshKVCache) throws -> Tensor {
        let be = backend, c = config, perFrame = grid.tokensPerFrame, all = 0..<grid.frames
        let framed = [grid.frames, perFrame, c.dim], flat = [1, grid.tokens, c.dim]
        let mod = try b.modulation(e0)                                              // [6, S, dim]
        let rows = try x.reshaped(framed)
        let attention = b.selfAttention
        let h = try attention.k.modulatedInput(rows, scale: try mod(.attentionScale, frames: all),
                                               shift: try mod(.attentionShift, frames: all), eps: c.eps, as: flat)
        let q = try attention.q(h).reshaped(attention.headShape(tokens: grid.tokens))  // [1, S*F, heads, hd]
        let k = try attention.k(h).reshaped(attention.headShape(tokens: grid.tokens))
        let v = try attention.v(h).reshaped(attention.headShape(tokens: grid.tokens))

        // Per level: RoPE at its position, its cache row, attention over that row.
        var outputs: [Tensor] = []
        var offset = 0
        for s in segments {
            let n = s.frames * perFrame
            let rope = RoPEGrid(frames: s.frames, height: grid.height, width: grid.width, frameOffset: s.startFrame)
            let query = try attention.normQ.rotated(try q.narrowed(axis: 1, start: offset, length: n), grid: rope)
            let key = try attention.normK.rotated(try k.narrowed(axis: 1, start: offset, length: n), grid: rope)
            let (keys, values) = try cache.store(layer: layer, row: s.row, startFrame: s.startFrame, keys: key,
                                                 values: try v.narrowed(axis: 1, start: offset, length: n))
            outputs.append(try attention.attend(query, keys: keys, values: values, precision: attentionPrecision))
            offset += n
        }
        let y = outputs.count == 1 ? outputs[0] : try be.concat(outputs, axis: 1)  // [1, S*F, heads, hd]
        let projected = try attention.o(.rows(try y.reshaped(flat)))
        var out = try be.gatedResidual(rows, try projected.reshaped(framed), gate: try mod(.attentionGate, frames: all))

        // Cross-attention to the prompt (the same keys for every level).
        let normed = try b.crossAttentionNorm.map { try $0(out) } ?? out
        out = try b.crossAttention(try normed.reshaped(flat), prompt: prompt.crossKV[layer],
                                   adding: try out.reshaped(flat)).reshaped(framed)

        // Feed-forward.
        let f = try b.ffn.up.modulatedInput(out, scale: try mod(.ffnScale, frames: all),
                                            shift: try mod(.ffnShift, frames: all), eps: c.eps, as: framed)
        out = try be.gatedResidual(out, try b.ffn(f).reshaped(framed), gate: try mod(.ffnGate, frames: all))
        return try out.reshaped(flat)
    }
}
