import ReelCore

// LongLive 2.0's forward pass (NVlabs/LongLive main, `wan_5b/modules/causal_model.py`,
// `CausalWanModel._forward_inference`): the same layers as LongLive 1.0's (`blockForward`), with a timestep per
// frame (the image-conditioned first frame runs at t = 0), a multi-shot RoPE offset, and the buffer cache of
// `LongLive2KVCache` with absolute or window-relative RoPE.

extension WanDiT {
    /// How a LongLive 2.0 pass places its frames in RoPE.
    public enum LongLive2RoPE: Sendable, Equatable {
        /// The default inference path (`use_relative_rope` unset): queries and keys rotated at their absolute
        /// latent frame plus `shotOffset` (`rope_temporal_offset` = shot index x `multi_shot_rope_offset`),
        /// keys cached rotated.
        case absolute(shotOffset: Int)
        /// `use_relative_rope: true`: keys cached raw; the attended buffer rotated at positions 0 ..< W (its
        /// buffer order) and the queries at W - n .. W - 1, so positions never exceed the buffer's length.
        /// The reference passes no shot offset on this path.
        case relative
    }

    /// One pass over `latents [F, H, W, C]`, frame i at timestep `timesteps[i]`, from absolute latent frame
    /// `startFrame`, writing the frames' keys and values into `cache` as the reference does. Returns the flow
    /// velocity `[F, H, W, C]`. The pass is never split into chunks (a block of 8 frames at 704x1280 is 7040
    /// tokens).
    public func forwardLongLive2(_ latents: Tensor, timesteps: [Float], startFrame: Int, rope: LongLive2RoPE,
                                 prompt: PromptContext, cache: LongLive2KVCache) throws -> Tensor {
        let c = config
        try require(latents.rank == 4 && latents.shape[3] == c.inChannels && timesteps.count == latents.shape[0],
                    "WanDiT.forwardLongLive2",
                    "expected latents [F, H, W, \(c.inChannels)] and F timesteps, got \(latents.shape), \(timesteps.count)")
        let (frames, height, width) = (latents.shape[0], latents.shape[1], latents.shape[2])
        try require(height % c.patch == 0 && width % c.patch == 0, "WanDiT.forwardLongLive2",
                    "latent size \(height)x\(width) is not a multiple of the patch \(c.patch)")
        let grid = PatchGrid(frames: frames, height: height / c.patch, width: width / c.patch)
        try require(grid.tokensPerFrame == cache.tokensPerFrame && cache.layers == c.layers, "WanDiT.forwardLongLive2",
                    "the cache (\(cache.layers) layers, \(cache.tokensPerFrame) tokens a frame) does not fit the pass")

        var x = try weights.patchEmbedding(latents, grid: grid)                      // [1, L, dim]
        // Reference: t is [B, F]; the sinusoid in float64, one row per frame.
        let (e, e0) = try weights.timeEmbedding(perFrame: timesteps)                 // [F, dim], [6, F, dim]
        let plan = try cache.plan(startFrame: startFrame, newFrames: frames)
        try forEachBlock { index, block in
            x = try longLive2BlockForward(block, layer: index, x: x, e0: e0, grid: grid, rope: rope, plan: plan,
                                          prompt: prompt, cache: cache)
        }
        cache.commit(plan)
        return try weights.head(x, timeEmbedding: e, grid: grid)
    }

    func longLive2BlockForward(_ b: Block, layer: Int, x: Tensor, e0: Tensor, grid: PatchGrid, rope: LongLive2RoPE,
                               plan: LongLive2KVCache.Plan, prompt: PromptContext,
                               cache: LongLive2KVCache) throws -> Tensor {
        let be = backend, c = config, all = 0..<grid.frames
        let framed = [grid.frames, grid.tokensPerFrame, c.dim], flat = [1, grid.tokens, c.dim]
        let mod = try b.modulation(e0)                                                // [6, F, dim]
        let attention = b.selfAttention
        let rows = try x.reshaped(framed)
        let h = try attention.k.modulatedInput(rows, scale: try mod(.attentionScale, frames: all),
                                               shift: try mod(.attentionShift, frames: all), eps: c.eps, as: flat)
        let heads = attention.headShape(tokens: grid.tokens)                         // [1, L, heads, headDim]
        let q = try attention.q(h).reshaped(heads)
        let v = try attention.v(h).reshaped(heads)
        func at(_ frame: Int, frames: Int) -> RoPEGrid {
            RoPEGrid(frames: frames, height: grid.height, width: grid.width, frameOffset: frame)
        }
        let query: Tensor
        var (keys, values): (Tensor, Tensor)
        switch rope {
        case .absolute(let shotOffset):
            // causal_rope_apply at current_start // frame_seqlen, plus the shot's temporal offset.
            let position = at(plan.startFrame + shotOffset, frames: grid.frames)
            query = try attention.normQ.rotated(q, grid: position)
            let k = try attention.normK.rotated(try attention.k(h).reshaped(heads), grid: position)
            (keys, values) = try cache.update(layer: layer, plan: plan, keys: k, values: v)
        case .relative:
            // Raw keys (after norm_k) cached; the window rotated from position 0 in buffer order, the queries
            // at the window's last `frames` positions.
            let k = try attention.normK(try attention.k(h)).reshaped(heads)
            (keys, values) = try cache.update(layer: layer, plan: plan, keys: k, values: v)
            keys = try be.rope3d(keys, grid: at(0, frames: plan.attended))
            query = try attention.normQ.rotated(q, grid: at(plan.attended - grid.frames, frames: grid.frames))
        }
        let y = try attention.attend(query, keys: keys, values: values, precision: attentionPrecision)
        let projected = try attention.o(.rows(try y.reshaped(flat)))
        var out = try be.gatedResidual(rows, try projected.reshaped(framed), gate: try mod(.attentionGate, frames: all))

        // Cross-attention to the prompt.
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
