import ReelCore

// Megatron-style tensor parallelism of the causal Wan DiT (Megatron-LM `ColumnParallelLinear` /
// `RowParallelLinear`, one all-reduce after each row-parallel layer): every rank holds every token of a pass
// and 1/N of each block's weights.
//
// - Self-attention: q, k, v column-parallel by heads (rank r holds heads `r * H/N ..< (r + 1) * H/N`, their
//   rows of the weights and biases); Wan's q and k RMS norms span every head (`WanRMSNorm` over dim), so each
//   rank sums the squares of its share of a row, one all-reduce adds the shares (q's and k's in one), and each
//   rank scales its share by `rsqrt(sum / dim + eps)` times its part of the norm's weight: the one-device
//   norm, the sum taken in another order. RoPE, the KV cache (`WanKVCache(shardedOver:)`: shard r holds rank
//   r's heads) and attention per rank for its heads; the output projection row-parallel (its columns of the
//   rank's heads; the bias on rank 0 only), then an all-reduce of the partial outputs.
// - Cross-attention alike: the prompt's keys and values per rank for its heads (`encodePrompt`, the k norm's
//   sums all-reduced once per layer and prompt), q column-parallel with the same norm, o row-parallel and an
//   all-reduce.
// - FFN: the first linear column-parallel with its GELU, the second row-parallel and an all-reduce.
// - adaLN modulation, the norms, the patch and time embeddings and the gated residuals run on every rank on
//   the same (all-reduced) rows, so every rank holds the same activations; the head runs on rank 0.
//
// Three all-reduces of `[tokens, dim]` a layer and two of `[tokens]` float32 for the norms; the norm's
// statistics and the rotation in float32, rounded once to the model's dtype as the fused one-device op does.
// On CPU ranks the all-reduce adds rank 0, 1, ... in float32: the result differs from one device by float
// rounding only (`TensorParallelTests` bounds it). Quantized (FP8/INT8) layers are refused: a row-parallel
// layer's per-row input scales would cover each rank's share of a row, not the row.

/// A Wan DiT spread over the ranks of a `Communicator` by tensor parallelism (see the top of this file).
public final class TensorParallelism: DiTParallelism, @unchecked Sendable {
    public let communicator: any Communicator
    /// Rank r's share of the model on rank r's stream: the whole configuration, blocks holding H/N heads and
    /// ffnDim/N hidden units (`WanDiT.Block.share`), every non-block weight whole.
    public let replicas: [WanDiT]
    public var scheme: DiTParallelScheme { .tensor }
    /// Per rank: ones `[1, dim / N]` in float32, so that one GEMM sums the squares of each row's share.
    let ones: [Tensor]

    init(communicator: any Communicator, replicas: [WanDiT], ones: [Tensor]) {
        self.communicator = communicator
        self.replicas = replicas
        self.ones = ones
    }

    var config: WanDiTConfig { replicas[0].config }

    public func map(_ transform: (WanDiT) throws -> WanDiT) rethrows -> WanDiT {
        let p = TensorParallelism(communicator: communicator, replicas: try replicas.map(transform), ones: ones)
        let r0 = p.replicas[0]
        let model = WanDiT(config: r0.config, weights: r0.weights, backend: r0.backend, parallelism: p)
        model.chunkFrames = r0.chunkFrames
        return model
    }

    /// Why a model of `heads` heads and `ffnDim` hidden units cannot be split over `ranks`, or nil.
    public static func splitProblem(heads: Int, ffnDim: Int, ranks: Int) -> String? {
        guard ranks >= 1 else { return "tensor parallelism needs at least one rank, got \(ranks)" }
        guard heads % ranks != 0 || ffnDim % ranks != 0 else { return nil }
        let fits = (1...heads).filter { heads % $0 == 0 && ffnDim % $0 == 0 }.map(String.init).joined(separator: ", ")
        let what = heads % ranks != 0 ? "\(heads) attention heads" : "\(ffnDim) FFN hidden units"
        return "tensor parallelism splits the model's \(heads) attention heads and \(ffnDim) FFN hidden units over "
            + "the ranks: \(what) do not divide by \(ranks) ranks (ranks that fit: \(fits))"
    }

    // MARK: The q/k RMS norm over all heads

    /// The squares of each row of rank r's share `x` (`[..., dim / N]`) summed in float32: `[rows, 1]`.
    private func shareSquares(_ x: Tensor, rank r: Int) throws -> Tensor {
        let be = x.backend, width = ones[r].count
        let xf = try (x.dtype == .f32 ? x : be.cast(x, to: .f32)).reshaped([x.count / width, width])
        return try be.linear(try be.unary(.square, xf), weight: ones[r])
    }

    /// Each rank's `[rows, 1]` sums of squares added over the ranks.
    private func normSums(_ shares: [Tensor]) throws -> [Tensor] {
        try communicator.allReduceSum(shares)
    }

    /// Rank r's share `x` (`[..., dim / N]`, `rows` rows) of Wan's RMS norm over the whole row:
    /// `x * rsqrt(total / dim + eps) * weight` with `totals` (`[rows, 1]`, float32) the all-reduced sums of
    /// squares, then rotated by `rope` when given; in float32, rounded once to x's dtype:
    /// `[1, rows, H/N, headDim]`.
    private func normed(_ x: Tensor, totals: Tensor, norm: WanDiT.RMSNorm, rope: RoPEGrid?) throws -> Tensor {
        let be = x.backend, c = config, rows = totals.shape[0], width = x.count / rows
        let xf = try (x.dtype == .f32 ? x : be.cast(x, to: .f32)).reshaped([rows, width])
        let scale = try be.unary(.rsqrt, try be.affine(totals, scale: 1 / Float(c.dim), bias: norm.eps))
        let weight = norm.weight.dtype == .f32 ? norm.weight : try be.cast(norm.weight, to: .f32)
        var y = try be.mul(try be.mul(xf, scale), weight).reshaped([1, rows, width / c.headDim, c.headDim])
        if let rope { y = try be.rope3d(y, grid: rope) }
        return x.dtype == .f32 ? y : try be.cast(y, to: x.dtype)
    }

    // MARK: Prompt

    public func encodePrompt(_ embedding: Tensor) throws -> WanDiT.PromptContext {
        let n = ranks, streams = communicator.streams
        let copies = try communicator.broadcast(try onRankZero(embedding, "WanDiT.encodePrompt"), from: 0)
        let text = try (0..<n).map { r in
            try streams[r].bindDevice()
            return try replicas[r].textContext(copies[r])                             // [textLength, dim], whole
        }
        var crossKV = [[WanDiT.KeysValues]](repeating: [], count: n)
        for layer in 0..<config.layers {
            var keys: [Tensor] = [], squares: [Tensor] = []
            for r in 0..<n {
                try streams[r].bindDevice()
                let k = try replicas[r].weights.blocks[layer].crossAttention.k(text[r])   // [textLength, dim/N]
                keys.append(k)
                squares.append(try shareSquares(k, rank: r))
            }
            let totals = try normSums(squares)
            for r in 0..<n {
                try streams[r].bindDevice()
                let a = replicas[r].weights.blocks[layer].crossAttention
                let k = try normed(keys[r], totals: totals[r], norm: a.normK, rope: nil)
                let v = try a.v(text[r]).reshaped(k.shape)
                crossKV[r].append(WanDiT.KeysValues(keys: k, values: v))
            }
        }
        try streams[0].bindDevice()
        let contexts = crossKV.map { WanDiT.PromptContext(crossKV: $0) }
        return WanDiT.PromptContext(crossKV: contexts[0].crossKV, ranks: contexts, scheme: .tensor)
    }

    // MARK: Forward

    public func forward(_ latents: Tensor, timestep t: Float, prompt: WanDiT.PromptContext, cache: WanKVCache,
                        access: WanDiT.CacheAccess) throws -> Tensor? {
        let c = config, op = "WanDiT.forward (tensor parallel)"
        let grid = try checkedGrid(latents, cache: cache, prompt: prompt, op: op), frames = grid.frames

        var (x, e, e0) = try embedded(latents, grid: grid, timestep: t, op: op) { _, tokens in tokens }   // every row, every rank
        let rope = RoPEGrid(frames: frames, height: grid.height, width: grid.width, frameOffset: access.startFrame)
        let written = cache.plan(startFrame: access.startFrame, frames: frames)
        for layer in 0..<c.layers {
            let skipOutput = layer == c.layers - 1 && !access.needsOutput
            x = try blockForward(layer: layer, x: x, e0: e0, grid: grid, rope: rope, prompt: prompt, cache: cache,
                                 written: written, skipOutput: skipOutput)
        }
        cache.commit(written)
        try communicator.streams[0].bindDevice()      // the caller goes on with rank 0's stream
        guard access.needsOutput else { return nil }
        return try replicas[0].weights.head(x[0], timeEmbedding: e[0], grid: grid)
    }

    /// One transformer block (the layers of `WanDiT.blockForward`) over every rank's copy of the rows `x[r]`
    /// `[1, L, dim]`; every rank returns the same rows.
    private func blockForward(layer: Int, x: [Tensor], e0: [Tensor], grid: WanDiT.PatchGrid, rope: RoPEGrid,
                              prompt: WanDiT.PromptContext, cache: WanKVCache, written: WanKVCache.WritePlan,
                              skipOutput: Bool) throws -> [Tensor] {
        let c = config, n = ranks, streams = communicator.streams
        let tokens = grid.tokens, share = c.dim / n, everyFrame = 0..<grid.frames
        let framed = [grid.frames, grid.tokensPerFrame, c.dim], flat = [1, tokens, c.dim]
        func block(_ r: Int) -> WanDiT.Block { replicas[r].weights.blocks[layer] }

        // Self-attention's q (unless only the cache is refreshed), k, v of the rank's heads, and the shares'
        // sums of squares for the norms (q's rows, then k's, in one all-reduce).
        var modulations: [WanDiT.Modulation.Modulated] = []
        var q: [Tensor] = [], k: [Tensor] = [], v: [Tensor] = [], squares: [Tensor] = []
        for r in 0..<n {
            let b = block(r), a = b.selfAttention, be = streams[r]
            try be.bindDevice()
            let mod = try b.modulation(e0[r])                                              // [6, F, dim]
            modulations.append(mod)
            let h = try a.k.modulatedInput(try x[r].reshaped(framed),
                                           scale: try mod(.attentionScale, frames: everyFrame),
                                           shift: try mod(.attentionShift, frames: everyFrame), eps: c.eps, as: flat)
            k.append(try a.k(h))                                                           // [1, L, dim/N]
            v.append(try a.v(h))
            var parts = [try shareSquares(k[r], rank: r)]
            if !skipOutput {
                q.append(try a.q(h))
                parts.insert(try shareSquares(q[r], rank: r), at: 0)
            }
            squares.append(parts.count == 1 ? parts[0] : try be.concat(parts, axis: 0))    // [P * L, 1]
        }
        let totals = try normSums(squares)

        // RoPE, the cache and attention for the rank's heads; the output projection's share of every row.
        var partials: [Tensor] = []
        for r in 0..<n {
            let a = block(r).selfAttention, be = streams[r], shard = cache.shards[r]
            try be.bindDevice()
            let kTotals = skipOutput ? totals[r] : try totals[r].narrowed(axis: 0, start: tokens, length: tokens)
            let keys = try normed(k[r], totals: kTotals, norm: a.normK, rope: rope)       // [1, L, H/N, D]
            try shard.write(layer: layer, keys: keys, values: try v[r].reshaped(keys.shape), plan: written)
            if skipOutput { continue }
            let query = try normed(q[r], totals: try totals[r].narrowed(axis: 0, start: 0, length: tokens),
                                   norm: a.normQ, rope: rope)
            let (cachedKeys, cachedValues) = try shard.attended(layer: layer, plan: written)
            let y = try be.attention(query: query, key: cachedKeys, value: cachedValues, scale: a.scale, bias: nil)
            partials.append(try a.o(.rows(try y.reshaped([1, tokens, share]))))           // [1, L, dim], a share
        }
        if skipOutput { return x }
        let attended = try communicator.allReduceSum(partials)

        // Cross-attention to the prompt: q by heads (its norm's sums all-reduced), o's shares all-reduced.
        var out: [Tensor] = [], crossQ: [Tensor] = []
        squares = []
        for r in 0..<n {
            let b = block(r), be = streams[r], mod = modulations[r]
            try be.bindDevice()
            let o = try be.gatedResidual(try x[r].reshaped(framed), try attended[r].reshaped(framed),
                                         gate: try mod(.attentionGate, frames: everyFrame))
            out.append(o)
            let normed = try b.crossAttentionNorm.map { try $0(o) } ?? o
            crossQ.append(try b.crossAttention.q(try normed.reshaped(flat)))              // [1, L, dim/N]
            squares.append(try shareSquares(crossQ[r], rank: r))
        }
        let crossTotals = try normSums(squares)
        partials = []
        for r in 0..<n {
            let a = block(r).crossAttention, be = streams[r], kv = prompt.ranks[r].crossKV[layer]
            try be.bindDevice()
            let query = try normed(crossQ[r], totals: crossTotals[r], norm: a.normQ, rope: nil)
            let y = try be.attention(query: query, key: kv.keys, value: kv.values, scale: a.scale, bias: nil)
            partials.append(try a.o(.rows(try y.reshaped([1, tokens, share]))))
        }
        let crossed = try communicator.allReduceSum(partials)

        // Feed-forward: the first layer's share of the hidden units (with GELU), the second's partial rows summed.
        partials = []
        for r in 0..<n {
            let b = block(r), be = streams[r], mod = modulations[r]
            try be.bindDevice()
            out[r] = try be.add(try out[r].reshaped(flat), crossed[r]).reshaped(framed)
            let f = try b.ffn.up.modulatedInput(out[r], scale: try mod(.ffnScale, frames: everyFrame),
                                                shift: try mod(.ffnShift, frames: everyFrame), eps: c.eps, as: framed)
            partials.append(try b.ffn(f))                                                  // [F, tpf, dim], a share
        }
        let fed = try communicator.allReduceSum(partials)
        return try (0..<n).map { r in
            let be = streams[r]
            try be.bindDevice()
            return try be.gatedResidual(out[r], try fed[r].reshaped(framed),
                                        gate: try modulations[r](.ffnGate, frames: everyFrame)).reshaped(flat)
        }
    }
}

// MARK: Shares of the weights

extension WanDiT.Linear {
    /// Output features `part * out/parts ..< (part + 1) * out/parts` (a column-parallel layer's share).
    func outputShare(_ part: Int, of parts: Int) throws -> WanDiT.Linear {
        precondition(quantized == nil, "Linear: a quantized layer is not split")
        let be = weight.backend, out = weight.shape[0] / parts
        return WanDiT.Linear(weight: try be.slice(weight, axis: 0, start: part * out, length: out),
                             bias: try bias.map { try be.slice($0, axis: 0, start: part * out, length: out) })
    }

    /// Input features `part * in/parts ..< (part + 1) * in/parts` (a row-parallel layer's share): its product
    /// is a partial sum of the output, so only part 0 keeps the bias.
    func inputShare(_ part: Int, of parts: Int) throws -> WanDiT.Linear {
        precondition(quantized == nil, "Linear: a quantized layer is not split")
        let be = weight.backend, inputs = weight.shape[1] / parts
        return WanDiT.Linear(weight: try be.slice(weight, axis: 1, start: part * inputs, length: inputs),
                             bias: part == 0 ? bias : nil)
    }
}

extension WanDiT.Attention {
    /// Heads `part * heads/parts ..< (part + 1) * heads/parts`: their q, k, v rows, o columns and norm weights.
    func headShare(_ part: Int, of parts: Int) throws -> WanDiT.Attention {
        var a = self
        a.q = try q.outputShare(part, of: parts)
        a.k = try k.outputShare(part, of: parts)
        a.v = try v.outputShare(part, of: parts)
        a.o = try o.inputShare(part, of: parts)
        let width = dim / parts, be = normQ.weight.backend
        a.normQ.weight = try be.slice(normQ.weight, axis: 0, start: part * width, length: width)
        a.normK.weight = try be.slice(normK.weight, axis: 0, start: part * width, length: width)
        a.heads = heads / parts
        return a
    }
}

extension WanDiT.Block {
    /// Rank `part`'s share of the block over `parts` ranks: its heads of both attentions, its hidden units of
    /// the FFN; the modulation table and the cross-attention norm whole.
    func share(_ part: Int, of parts: Int) throws -> WanDiT.Block {
        var b = self
        b.selfAttention = try selfAttention.headShare(part, of: parts)
        b.crossAttention = try crossAttention.headShare(part, of: parts)
        b.ffn = WanDiT.FeedForward(up: try ffn.up.outputShare(part, of: parts),
                                   down: try ffn.down.inputShare(part, of: parts))
        return b
    }
}

extension WanDiT {
    /// The model in `source` spread over `communicator`'s ranks by tensor parallelism: rank r loads every
    /// non-block weight and rank r's share of each block on its stream (a block is read whole, split, and the
    /// rest dropped before the next, so a rank holds 1/N of the blocks' weights plus one block). Inputs and
    /// outputs are on rank 0's stream; caches come from `makeCache` (sharded by heads: 1/N of the cache per
    /// rank), prompts from `encodePrompt` (each rank its heads' keys and values). The heads and the FFN's
    /// hidden units must divide by the rank count.
    public static func loadTensorParallel(from source: any TensorSource, layout: Layout? = nil, heads: Int? = nil,
                                          lora: (any TensorSource)? = nil, loraScale: Float = 1,
                                          communicator: any Communicator, dtype: DType = .f32) throws -> WanDiT {
        let layout = layout ?? Layout.detect(source.keys), n = communicator.ranks
        var replicas: [WanDiT] = [], ones: [Tensor] = []
        for (r, stream) in communicator.streams.enumerated() {
            try stream.bindDevice()
            let b = try WeightBinder(source: source, rules: layout.rules, backend: stream, dtype: dtype)
            var config = try detectConfig(b)
            if let heads { config.heads = heads }
            try config.validate()
            if let problem = TensorParallelism.splitProblem(heads: config.heads, ffnDim: config.ffnDim, ranks: n) {
                throw ReelError.input(problem)
            }
            let merger = try lora.map { try LoRAMerger(source: $0, scale: loraScale, backend: stream, dtype: dtype) }
            let binder = WanDiTBinder(weights: b, lora: merger)
            let weights = try WanDiTWeights(binder, config, dtype: dtype) { i in
                try Block(binder, "blocks.\(i)", config).share(r, of: n)
            }
            try b.finish()
            try merger?.finish()
            replicas.append(WanDiT(config: config, weights: weights, backend: stream))
            ones.append(try stream.tensor([Float](repeating: 1, count: config.dim / n), shape: [1, config.dim / n]))
        }
        try communicator.streams[0].bindDevice()
        return TensorParallelism(communicator: communicator, replicas: replicas, ones: ones).map { $0 }
    }
}
