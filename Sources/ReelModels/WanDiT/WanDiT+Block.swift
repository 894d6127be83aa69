import ReelCore

extension WanDiT {
    /// One transformer block (LongLive `CausalWanAttentionBlock`): adaLN, self-attention over the KV
    /// cache, cross-attention to the prompt, adaLN, feed-forward, with gated residuals.
    struct Block {
        var modulation: Modulation
        var selfAttention: Attention
        /// Affine LayerNorm before cross-attention (`norm3`; `WanDiTConfig.crossAttentionNorm`).
        var crossAttentionNorm: LayerNorm?
        var crossAttention: Attention
        var ffn: FeedForward

        init(_ w: WanDiTBinder, _ name: String, _ c: WanDiTConfig) throws {
            modulation = try Modulation(w, "\(name).modulation", dim: c.dim)
            selfAttention = try Attention(w, "\(name).self_attn", c)
            crossAttention = try Attention(w, "\(name).cross_attn", c)
            crossAttentionNorm = c.crossAttentionNorm ? try LayerNorm(w, "\(name).norm3", dim: c.dim, eps: c.eps) : nil
            ffn = try FeedForward(w, "\(name).ffn", dim: c.dim, hidden: c.ffnDim)
        }
    }

    /// One transformer block. A pass over more than `chunkFrames` frames runs in chunks of frames:
    /// first every chunk's self-attention keys and values go into the cache (the queries of every
    /// chunk attend to all of them), then each chunk runs the rest of the block and its output rows
    /// overwrite its rows of `x`, which nothing reads again. `x` is the pass's own activation (no
    /// other holder), so writing into it saves the layer output's buffer.
    func blockForward(_ b: Block, layer: Int, x: Tensor, e0: Tensor, grid: PatchGrid, rope: RoPEGrid,
                      prompt: PromptContext, cache: WanKVCache, written: WanKVCache.WritePlan,
                      skipOutput: Bool) throws -> Tensor {
        let be = backend, c = config, perFrame = grid.tokensPerFrame
        let mod = try b.modulation(e0)                                        // [6, F, dim]
        func rows(_ r: Range<Int>) throws -> Tensor {                        // [n, perFrame, dim] view of x
            try x.narrowed(axis: 1, start: r.lowerBound * perFrame, length: r.count * perFrame)
                .reshaped([r.count, perFrame, c.dim])
        }
        // adaLN before q/k/v: straight to quantized rows when the layer reading it is quantized.
        func attentionInput(_ r: Range<Int>) throws -> LinearInput {          // [1, n * perFrame, dim]
            try b.selfAttention.k.modulatedInput(try rows(r), scale: try mod(.attentionScale, frames: r),
                                                 shift: try mod(.attentionShift, frames: r), eps: c.eps,
                                                 as: [1, r.count * perFrame, c.dim])
        }
        func chunkGrid(_ r: Range<Int>) -> RoPEGrid {
            RoPEGrid(frames: r.count, height: rope.height, width: rope.width,
                     frameOffset: rope.frameOffset + r.lowerBound, theta: rope.theta)
        }
        let chunks = frameChunks(grid.frames)

        // Self-attention keys and values of every frame into the cache.
        var firstInput: LinearInput?
        for r in chunks {
            let plan = chunks.count == 1 ? written : written.restricted(toInputs: r)
            if plan.writes.isEmpty { continue }      // frames the cache does not keep
            let h = try attentionInput(r)
            if chunks.count == 1 { firstInput = h }
            try b.selfAttention.cacheKeysValues(h, tokens: r.count * perFrame, grid: chunkGrid(r), cache: cache,
                                                layer: layer, plan: plan)
        }
        if skipOutput { return x }

        let (keys, values) = try cache.attended(layer: layer, plan: written)
        for r in chunks {
            let tokens = r.count * perFrame
            let framed = [r.count, perFrame, c.dim], flat = [1, tokens, c.dim]
            // Self-attention of these rows over the cache.
            let h = try firstInput ?? attentionInput(r)
            firstInput = nil
            let y = try b.selfAttention(h, tokens: tokens, grid: chunkGrid(r), keys: keys, values: values,
                                        precision: attentionPrecision)
            var out = try be.gatedResidual(try rows(r), try y.reshaped(framed),
                                           gate: try mod(.attentionGate, frames: r))

            // Cross-attention to the prompt.
            let normed = try b.crossAttentionNorm.map { try $0(out) } ?? out
            out = try b.crossAttention(try normed.reshaped(flat), prompt: prompt.crossKV[layer],
                                       adding: try out.reshaped(flat)).reshaped(framed)

            // Feed-forward.
            let f = try b.ffn.up.modulatedInput(out, scale: try mod(.ffnScale, frames: r),
                                                shift: try mod(.ffnShift, frames: r), eps: c.eps, as: framed)
            let ffn = try b.ffn(f)
            out = try be.gatedResidual(out, try ffn.reshaped(framed), gate: try mod(.ffnGate, frames: r))
            out = try out.reshaped(flat)
            if chunks.count == 1 { return out }
            try be.copy(out, into: x, axis: 1, at: r.lowerBound * perFrame)
        }
        return x
    }

    /// The frame ranges a pass over `frames` frames runs its layers on (`chunkFrames`).
    func frameChunks(_ frames: Int) -> [Range<Int>] {
        guard chunkFrames > 0, frames > chunkFrames else { return [0..<frames] }
        return stride(from: 0, to: frames, by: chunkFrames).map { $0..<min($0 + chunkFrames, frames) }
    }
}
