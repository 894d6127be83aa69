import ReelCore

extension WanDiT {
    /// Wan's attention layer (`WanSelfAttention`; `WanT2VCrossAttention` has the same weights):
    /// q/k/v/o projections `[dim, dim]` and RMS norms of q and k over the whole dim.
    struct Attention {
        var q, k, v, o: Linear
        var normQ, normK: RMSNorm
        var heads: Int
        let headDim: Int

        init(_ w: WanDiTBinder, _ name: String, _ c: WanDiTConfig) throws {
            let d = c.dim
            q = try Linear(w, "\(name).q", out: d, in: d)
            k = try Linear(w, "\(name).k", out: d, in: d)
            v = try Linear(w, "\(name).v", out: d, in: d)
            o = try Linear(w, "\(name).o", out: d, in: d)
            normQ = try RMSNorm(w, "\(name).norm_q", dim: d, eps: c.eps)
            normK = try RMSNorm(w, "\(name).norm_k", dim: d, eps: c.eps)
            heads = c.heads
            headDim = c.headDim
        }

        var dim: Int { heads * headDim }
        /// Softmax scale 1 / sqrt(headDim).
        var scale: Float { 1 / Float(headDim).squareRoot() }

        /// `[1, tokens, heads, headDim]`.
        func headShape(tokens: Int) -> [Int] { [1, tokens, heads, headDim] }

        /// The four projections quantized to `format` (`Linear.quantized`); the norms stay as they are.
        func quantized(to format: QuantizedFormat) throws -> Attention {
            var a = self
            a.q = try q.quantized(to: format)
            a.k = try k.quantized(to: format)
            a.v = try v.quantized(to: format)
            a.o = try o.quantized(to: format)
            return a
        }
    }
}

// MARK: - Self-attention over the KV cache

extension WanDiT.Attention {
    /// Writes the keys and values of `x` (`[1, tokens, dim]`, the adaLN output) into `cache` as
    /// `plan` says, keys after norm_k and RoPE (one fused op; cached already rotated). Straight into
    /// the cache when the plan's frames go to one run of slots (`WanKVCache.destination`).
    func cacheKeysValues(_ x: WanDiT.LinearInput, tokens: Int, grid: RoPEGrid, cache: WanKVCache, layer: Int,
                         plan: WanKVCache.WritePlan) throws {
        let projected = try k(x).reshaped(headShape(tokens: tokens))
        if let (kd, vd) = try cache.destination(layer: layer, plan: plan) {
            try normK.rotated(projected, grid: grid, into: kd)
            _ = try v(x, into: vd)
        } else {
            let keys = try normK.rotated(projected, grid: grid)
            let values = try v(x).reshaped(headShape(tokens: tokens))
            try cache.write(layer: layer, keys: keys, values: values, plan: plan)
        }
    }

    /// Self-attention of the rows `x` (`[1, tokens, dim]`, the adaLN output) over the cached `keys`
    /// and `values`, computed at `precision`: the output projection `[1, tokens, dim]`.
    func callAsFunction(_ x: WanDiT.LinearInput, tokens: Int, grid: RoPEGrid, keys: Tensor,
                        values: Tensor, precision: AttentionPrecision) throws -> Tensor {
        let query = try normQ.rotated(try q(x).reshaped(headShape(tokens: tokens)), grid: grid)
        let y = try attend(query, keys: keys, values: values, precision: precision)
        return try o(.rows(try y.reshaped([1, tokens, dim])))
    }
}

/// How the DiT's self-attention computes (`WanDiT.attentionPrecision`, `--attention`).
public enum AttentionPrecision: String, Sendable, CaseIterable {
    /// The model's dtype (bf16 on the GPU: cuDNN's or Reel's fused attention; float32 on the CPU): the reference's.
    case model = "bf16"
    /// Q, K, V, the probabilities and the output in FP8 E4M3 with per-tensor scales (`Backend.fp8Attention`:
    /// cuDNN's FP8 SDPA on Hopper), at the error `LongLiveParityTests` and `reel parity --attention fp8`
    /// measure. An option, never the default.
    case fp8
}

extension WanDiT.Attention {
    /// softmax(query keys^T * scale) values at `precision`: `Backend.attention` or `Backend.fp8Attention`.
    func attend(_ query: Tensor, keys: Tensor, values: Tensor, precision: AttentionPrecision) throws -> Tensor {
        switch precision {
        case .model: try query.backend.attention(query: query, key: keys, value: values, scale: scale, bias: nil)
        case .fp8: try query.backend.fp8Attention(query: query, key: keys, value: values, scale: scale)
        }
    }
}

// MARK: - Cross-attention to the prompt

extension WanDiT.Attention {
    /// The prompt's keys and values of this cross-attention for the projected text `context`
    /// `[textLength, dim]`: each `[1, textLength, heads, headDim]`.
    func promptKeysValues(_ context: Tensor) throws -> WanDiT.KeysValues {
        let shape = headShape(tokens: context.shape[0])
        let keys = try normK(try k(context))
        let values = try v(context)
        return WanDiT.KeysValues(keys: try keys.reshaped(shape), values: try values.reshaped(shape))
    }

    /// Cross-attention of `x` (`[1, tokens, dim]`) to the prompt, its output projection added to
    /// `residual` (`[1, tokens, dim]`).
    func callAsFunction(_ x: Tensor, prompt: WanDiT.KeysValues, adding residual: Tensor) throws -> Tensor {
        let tokens = x.shape[1]
        let query = try normQ(try q(x)).reshaped(headShape(tokens: tokens))
        let y = try x.backend.attention(query: query, key: prompt.keys, value: prompt.values, scale: scale, bias: nil)
        return try o(.rows(try y.reshaped([1, tokens, dim])), adding: residual)
    }
}
