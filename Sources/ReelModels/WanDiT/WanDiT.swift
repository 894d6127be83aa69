import Foundation
import ReelCore

/// The causal Wan2.1 DiT (LongLive `wan/modules/causal_model.py`), written once against `Backend`.
///
/// Latents are channel-last, `[F, H, W, C]` for F latent frames of H x W with C = 16 channels.
/// Tokens are ordered (frame, row, column) after 2x2 patching, `tokensPerFrame = H/2 * W/2`.
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

    init(config: WanDiTConfig, weights: WanDiTWeights, backend: any Backend) {
        self.config = config
        self.weights = weights
        self.backend = backend
    }

    /// The same model with each block's FFN in FP8 E4M3: its two layers' weights quantized per output
    /// channel now, their inputs per token as they are made (LightX2V's channel-wise FP8 weights with
    /// dynamic per-token activations; the adaLN before the FFN writes FP8 rows directly). The
    /// attention projections stay in the model's dtype, measured (H200, DiT 1.3B; LongLive fixture):
    /// at [4680, 1536] x [1536, 1536] an FP8 GEMM saves ~5 us of ~35, about what quantizing its input
    /// costs, while FP8 q/k/v raised the video's error from 2.0e-2 to 3.3e-2 of the model's
    /// contribution for 235.7 instead of 240.9 ms per block (two calls; ~1.6 ms by the per-GEMM times)
    /// and 35.1 instead of 35.2 FPS end to end. So do the prompt's cross-attention keys and values,
    /// the embeddings and the head. Outputs move away from the bf16 model's by FP8's rounding
    /// (3 mantissa bits); the parity fixtures hold the bf16 model.
    public func quantizedFP8() throws -> WanDiT {
        var w = weights
        w.blocks = try weights.blocks.map { b in
            var q = b
            q.ffn = (try b.ffn.0.quantizedFP8(), try b.ffn.1.quantizedFP8())
            return q
        }
        let model = WanDiT(config: config, weights: w, backend: backend)
        model.chunkFrames = chunkFrames
        return model
    }

    /// Whether the blocks' FFN layers run in FP8 (`quantizedFP8`).
    public var isFP8: Bool { weights.blocks.first?.ffn.0.fp8 != nil }

    /// A linear layer's input: 16-bit rows, or FP8 rows where the adaLN before an FP8 layer wrote
    /// them directly (`modulatedLayerNormQuantized`).
    enum LinearInput {
        case rows(Tensor)
        case fp8(RowQuantized)
    }

    /// `x W^T + b` through `w`: its FP8 GEMM when `w` is quantized (16-bit rows quantized per token
    /// first), else the plain one; with GELU (tanh), a residual added, or written into `out` (at most
    /// one of the last two).
    func project(_ input: LinearInput, _ w: LinearWeights, gelu: Bool = false, adding residual: Tensor? = nil,
                 into out: Tensor? = nil) throws -> Tensor {
        let be = backend
        if let wq = w.fp8 {
            let xq: RowQuantized
            switch input {
            case .rows(let x): xq = try be.quantizeRows(x)
            case .fp8(let q): xq = q
            }
            return try be.quantizedLinear(xq, weight: wq, bias: w.bias, gelu: gelu, adding: residual, into: out)
        }
        guard case .rows(let x) = input else {
            throw ReelError.invalidArgument(op: "WanDiT", message: "a layer without FP8 weights read an input made only in FP8")
        }
        precondition(!(gelu && (residual != nil || out != nil)) && !(residual != nil && out != nil), "project: one variant at a time")
        if gelu { return try be.linearGELU(x, weight: w.weight, bias: w.bias) }
        if let residual { return try be.linear(x, weight: w.weight, bias: w.bias, adding: residual) }
        if let out {
            try be.linear(x, weight: w.weight, bias: w.bias, into: out)
            return out
        }
        return try be.linear(x, weight: w.weight, bias: w.bias)
    }

    /// The same weights with cross-attention over `textLength` rows (prompt tokens, then zero rows).
    /// Wan pads to 512; a model trained with another length records it (`text_len` metadata).
    public func withTextLength(_ textLength: Int) -> WanDiT {
        var c = config
        c.textLength = textLength
        let model = WanDiT(config: c, weights: weights, backend: backend)
        model.chunkFrames = chunkFrames
        return model
    }

    /// Per-prompt state: the projected text context and every layer's cross-attention K/V.
    /// LongLive recomputes these after a prompt switch; computing them once per prompt is equal.
    public final class PromptContext: @unchecked Sendable {
        /// `[layers]` of (K, V), each `[1, textLength, heads, headDim]`.
        let crossKV: [(Tensor, Tensor)]
        init(crossKV: [(Tensor, Tensor)]) { self.crossKV = crossKV }
    }

    /// Projects a prompt embedding (`[tokens, textDim]`, tokens <= textLength, rows past the real tokens
    /// zero) and precomputes every layer's cross-attention keys and values.
    public func encodePrompt(_ embedding: Tensor) throws -> PromptContext {
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
        let t = weights.textEmbedding
        var c = try be.linear(ctx, weight: t.0.weight, bias: t.0.bias)
        c = try be.unary(.geluTanh, c)
        c = try be.linear(c, weight: t.1.weight, bias: t.1.bias)   // [textLength, dim]
        let shape = [1, config.textLength, config.heads, config.headDim]
        let kv = try weights.blocks.map { block -> (Tensor, Tensor) in
            let a = block.crossAttention
            let k = try be.rmsNorm(try be.linear(c, weight: a.k.weight, bias: a.k.bias), weight: a.normK, eps: config.eps)
            let v = try be.linear(c, weight: a.v.weight, bias: a.v.bias)
            return (try k.reshaped(shape), try v.reshaped(shape))
        }
        return PromptContext(crossKV: kv)
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
        let be = backend, c = config
        try require(latents.rank == 4 && latents.shape[3] == c.inChannels, "WanDiT.forward",
                    "expected latents [F, H, W, \(c.inChannels)], got \(latents.shape)")
        let (frames, height, width) = (latents.shape[0], latents.shape[1], latents.shape[2])
        try require(height % c.patch == 0 && width % c.patch == 0, "WanDiT.forward",
                    "latent size \(height)x\(width) is not a multiple of the patch \(c.patch)")
        let (gh, gw) = (height / c.patch, width / c.patch)
        try require(gh * gw == cache.tokensPerFrame, "WanDiT.forward",
                    "latents give \(gh * gw) tokens per frame, the cache was made for \(cache.tokensPerFrame)")
        let perFrame = gh * gw, tokens = frames * perFrame

        // Patch embedding: a linear map over each 2x2 patch, features in (kh, kw, c) order.
        var x = try be.cast(latents, to: weights.dtype)
        x = try x.reshaped([frames, gh, c.patch, gw, c.patch, c.inChannels])
        x = try be.permute(x, [0, 1, 3, 2, 4, 5])                           // [F, gh, gw, p, p, C]
        x = try x.reshaped([1, tokens, c.patch * c.patch * c.inChannels])
        x = try be.linear(x, weight: weights.patchEmbedding.weight, bias: weights.patchEmbedding.bias) // [1, L, dim]

        // Time embedding: sinusoid in float64 (reference), then the two MLPs.
        let (e, e0) = try timeEmbedding(t, frames: frames)                    // [F, dim], [6, F, dim]
        let grid = RoPEGrid(frames: frames, height: gh, width: gw, frameOffset: access.startFrame)
        let written = cache.plan(startFrame: access.startFrame, frames: frames)

        for (index, block) in weights.blocks.enumerated() {
            let isLast = index == weights.blocks.count - 1
            x = try blockForward(block, layer: index, x: x, e0: e0, frames: frames, perFrame: perFrame,
                                 grid: grid, prompt: prompt, cache: cache, written: written,
                                 skipOutput: isLast && !access.needsOutput)
        }
        cache.commit(written)
        guard access.needsOutput else { return nil }

        // Head: modulation from the un-projected time embedding e.
        let hm = weights.headModulation                                          // [2, dim]
        let shift = try be.add(try e.reshaped([frames, 1, c.dim]), try be.slice(hm, axis: 0, start: 0, length: 1))
        let scale = try be.add(try e.reshaped([frames, 1, c.dim]), try be.slice(hm, axis: 0, start: 1, length: 1))
        var h = try be.modulatedLayerNorm(try x.reshaped([frames, perFrame, c.dim]), scale: scale, shift: shift, eps: c.eps)
        h = try be.linear(h, weight: weights.head.weight, bias: weights.head.bias)  // [F, perFrame, p*p*C]
        // Unpatchify: output channel (q*p + r)*C + c -> pixel (row*p + q, col*p + r).
        h = try h.reshaped([frames, gh, gw, c.patch, c.patch, c.outChannels])
        h = try be.permute(h, [0, 1, 3, 2, 4, 5])                              // [F, gh, p, gw, p, C]
        return try h.reshaped([frames, height, width, c.outChannels])
    }

    /// e `[F, dim]` and e0 = projection `[6, F, dim]` for timestep t on every frame (the reference's
    /// `[F, 6, dim]` permuted once, so that every layer takes its six parts as views).
    func timeEmbedding(_ t: Float, frames: Int) throws -> (Tensor, Tensor) {
        let be = backend, c = config
        let half = c.freqDim / 2
        var row = [Float](repeating: 0, count: c.freqDim)
        for i in 0..<half {
            // Reference sinusoidal_embedding_1d: float64, cos first.
            let arg = Double(t) * pow(10_000, -Double(i) / Double(half))
            row[i] = Float(cos(arg))
            row[half + i] = Float(sin(arg))
        }
        let sinusoid = try be.tensor(Array((0..<frames).map { _ in row }.joined()), shape: [frames, c.freqDim],
                                     dtype: weights.dtype)
        let te = weights.timeEmbedding
        var e = try be.linear(sinusoid, weight: te.0.weight, bias: te.0.bias)
        e = try be.unary(.silu, e)
        e = try be.linear(e, weight: te.1.weight, bias: te.1.bias)          // [F, dim]
        let p = weights.timeProjection
        let e0 = try be.linear(try be.unary(.silu, e), weight: p.weight, bias: p.bias)
        return (e, try be.permute(try e0.reshaped([frames, 6, c.dim]), [1, 0, 2]))
    }

    /// One transformer block. A pass over more than `chunkFrames` frames runs in chunks of frames:
    /// first every chunk's self-attention keys and values go into the cache (the queries of every
    /// chunk attend to all of them), then each chunk runs the rest of the block and its output rows
    /// overwrite its rows of `x`, which nothing reads again. `x` is the pass's own activation (no
    /// other holder), so writing into it saves the layer output's buffer.
    func blockForward(_ b: WanDiTWeights.Block, layer: Int, x: Tensor, e0: Tensor, frames: Int, perFrame: Int,
                      grid: RoPEGrid, prompt: PromptContext, cache: WanKVCache, written: WanKVCache.WritePlan,
                      skipOutput: Bool) throws -> Tensor {
        let be = backend, c = config
        // m = modulation + e0 as [6, F, dim], so that part i of frames r is a view (no copy):
        // shift1, scale1, gate1, shift2, scale2, gate2, each [n, 1, dim] for n frames.
        let m = try be.add(e0, try b.modulation.reshaped([6, 1, c.dim]))     // [6, F, dim]
        func mod(_ i: Int, _ r: Range<Int>) throws -> Tensor {
            try m.narrowed(axis: 0, start: i, length: 1).narrowed(axis: 1, start: r.lowerBound, length: r.count)
                .reshaped([r.count, 1, c.dim])
        }
        func rows(_ r: Range<Int>) throws -> Tensor {                        // [n, perFrame, dim] view of x
            try x.narrowed(axis: 1, start: r.lowerBound * perFrame, length: r.count * perFrame)
                .reshaped([r.count, perFrame, c.dim])
        }
        // adaLN before the q/k/v and FFN layers: straight to FP8 rows when the layer reading it is FP8.
        func adaLN(_ x: Tensor, scale: Tensor, shift: Tensor, as dims: [Int], for reader: LinearWeights) throws -> LinearInput {
            if reader.fp8 != nil {
                return .fp8(try be.modulatedLayerNormQuantized(x, scale: scale, shift: shift, eps: c.eps).reshaped(dims))
            }
            return .rows(try be.modulatedLayerNorm(x, scale: scale, shift: shift, eps: c.eps).reshaped(dims))
        }
        func attentionInput(_ r: Range<Int>) throws -> LinearInput {          // [1, n * perFrame, dim]
            try adaLN(try rows(r), scale: try mod(1, r), shift: try mod(0, r), as: [1, r.count * perFrame, c.dim],
                      for: b.selfAttention.k)
        }
        func chunkGrid(_ r: Range<Int>) -> RoPEGrid {
            RoPEGrid(frames: r.count, height: grid.height, width: grid.width,
                     frameOffset: grid.frameOffset + r.lowerBound, theta: grid.theta)
        }
        let a = b.selfAttention
        let chunks = frameChunks(frames)

        // Self-attention keys and values of every frame into the cache (norm_k over the whole dim, then
        // RoPE: one fused op; cached already rotated).
        var firstInput: LinearInput?
        for r in chunks {
            let plan = chunks.count == 1 ? written : written.restricted(toInputs: r)
            if plan.writes.isEmpty { continue }      // frames the cache does not keep
            let h = try attentionInput(r)
            if chunks.count == 1 { firstInput = h }
            let heads = [1, r.count * perFrame, c.heads, c.headDim]
            let projected = try project(h, a.k).reshaped(heads)
            if let (kd, vd) = try cache.destination(layer: layer, plan: plan) {   // straight into the cache
                try be.rmsNormRoPE(projected, weight: a.normK, eps: c.eps, grid: chunkGrid(r), into: kd)
                _ = try project(h, a.v, into: vd)
            } else {
                let k = try be.rmsNormRoPE(projected, weight: a.normK, eps: c.eps, grid: chunkGrid(r))
                let v = try project(h, a.v).reshaped(heads)
                try cache.write(layer: layer, keys: k, values: v, plan: plan)
            }
        }
        if skipOutput { return x }

        let (keys, values) = try cache.attended(layer: layer, plan: written)
        let scale = 1 / Float(c.headDim).squareRoot()
        for r in chunks {
            let tokens = r.count * perFrame
            let framed = [r.count, perFrame, c.dim], heads = [1, tokens, c.heads, c.headDim]
            // Self-attention of these rows over the cache.
            let h = try firstInput ?? attentionInput(r)
            firstInput = nil
            let q = try be.rmsNormRoPE(try project(h, a.q).reshaped(heads), weight: a.normQ, eps: c.eps, grid: chunkGrid(r))
            var y = try be.attention(query: q, key: keys, value: values, scale: scale, bias: nil)
            y = try project(.rows(try y.reshaped([1, tokens, c.dim])), a.o)
            var out = try be.gatedResidual(try rows(r), try y.reshaped(framed), gate: try mod(2, r))

            // Cross-attention to the prompt (norm3 has affine weights).
            let xa = b.crossAttention
            let normed = c.crossAttentionNorm
                ? try be.layerNorm(out, weight: b.norm3?.weight, bias: b.norm3?.bias, eps: c.eps) : out
            var cq = try project(.rows(try normed.reshaped([1, tokens, c.dim])), xa.q)
            cq = try be.rmsNorm(cq, weight: xa.normQ, eps: c.eps).reshaped(heads)
            let (ck, cv) = prompt.crossKV[layer]
            let cy = try be.attention(query: cq, key: ck, value: cv, scale: scale, bias: nil)
            out = try project(.rows(try cy.reshaped([1, tokens, c.dim])), xa.o,
                              adding: try out.reshaped([1, tokens, c.dim])).reshaped(framed)

            // Feed-forward.
            let f = try adaLN(out, scale: try mod(4, r), shift: try mod(3, r), as: framed, for: b.ffn.0)
            let hidden = try project(f, b.ffn.0, gelu: true)                          // GELU(approximate="tanh"), as Wan
            let ffn = try project(.rows(hidden), b.ffn.1)
            out = try be.gatedResidual(out, try ffn.reshaped(framed), gate: try mod(5, r))
            out = try out.reshaped([1, tokens, c.dim])
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
