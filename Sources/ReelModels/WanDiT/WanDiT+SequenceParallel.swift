import ReelCore

// Ulysses sequence parallelism of the causal Wan DiT (DeepSpeed-Ulysses: an all-to-all before and after
// attention), exact: every rank holds all the weights and 1/N of each pass's tokens; every layer but
// self-attention is token-local and runs on the rank's rows; around self-attention an all-to-all turns the
// rows' q, k, v (all heads) into all rows of 1/N of the heads, and back after. Each rank keeps its heads'
// KV cache (sink + window), so the cache's memory is split too. The arithmetic of each output element is
// the one-device model's, op for op (`SequenceParallelTests` checks bit for bit on the CPU). One thread issues
// every rank's part in turn, binding each rank's device first (`Backend.bindDevice`); on GPUs the ranks' streams
// then run at once.

/// Which token rows a rank holds: each frame's `tokensPerFrame` rows padded with zero rows to a multiple
/// of the ranks, rank r holding rows `r * perRank ..< (r + 1) * perRank` of every frame. Every frame is
/// split alike, so a rank's rows keep the per-frame layout `[F, perRank, dim]` and the per-frame adaLN
/// modulation applies as on one device. Padding rows are computed like the others and dropped before RoPE,
/// the cache and attention, and from the output; they never reach a real row.
public struct TokenShards: Sendable, Equatable {
    public let tokensPerFrame: Int
    public let ranks: Int

    public init(tokensPerFrame: Int, ranks: Int) {
        self.tokensPerFrame = tokensPerFrame; self.ranks = ranks
    }

    /// Rows of each frame per rank: tokensPerFrame / ranks, rounded up.
    public var perRank: Int { (tokensPerFrame + ranks - 1) / ranks }
    /// Rows of each frame over all ranks, padding included.
    public var padded: Int { perRank * ranks }

    /// Rank `rank`'s rows of `x` `[F, tokensPerFrame, ...]`: `[F, perRank, ...]` (a copy on x's backend).
    func rows(of x: Tensor, rank: Int) throws -> Tensor {
        try x.backend.slice(try paddedRows(x), axis: 1, start: rank * perRank, length: perRank)
    }

    /// `x` `[F, tokensPerFrame, ...]` with zero rows appended to each frame: `[F, padded, ...]`.
    func paddedRows(_ x: Tensor) throws -> Tensor {
        guard padded > tokensPerFrame else { return x }
        let zeros = try x.backend.zeros(x.shape.replacing(axis: 1, with: padded - tokensPerFrame), dtype: x.dtype)
        return try x.backend.concat([x, zeros], axis: 1)
    }

    /// Every rank's rows `[F, perRank, ...]` (in rank order, on `backend`) put back together: `[F, tokensPerFrame, ...]`.
    func joined(_ parts: [Tensor], on backend: any Backend) throws -> Tensor {
        let all = parts.count == 1 ? parts[0] : try backend.concat(parts, axis: 1)
        return padded == tokensPerFrame ? all : try backend.slice(all, axis: 1, start: 0, length: tokensPerFrame)
    }
}

/// A Wan DiT spread over the ranks of a `Communicator` by sequence parallelism (see the top of this file).
/// The model (`WanDiT.sequenceParallel`) takes its inputs and gives its outputs on rank 0's stream, so the
/// generator around it is the one-device generator.
public final class SequenceParallelism: DiTParallelism, @unchecked Sendable {
    public let communicator: any Communicator
    /// Rank r's model: all the weights, on rank r's stream.
    public let replicas: [WanDiT]

    init(communicator: any Communicator, replicas: [WanDiT]) {
        self.communicator = communicator
        self.replicas = replicas
    }

    public var scheme: DiTParallelScheme { .sequence }
    var config: WanDiTConfig { replicas[0].config }

    /// The model again with each replica transformed alike (FP8, text length).
    public func map(_ transform: (WanDiT) throws -> WanDiT) rethrows -> WanDiT {
        let p = SequenceParallelism(communicator: communicator, replicas: try replicas.map(transform))
        let r0 = p.replicas[0]
        let model = WanDiT(config: r0.config, weights: r0.weights, backend: r0.backend, parallelism: p)
        model.chunkFrames = r0.chunkFrames
        model.attentionPrecision = r0.attentionPrecision
        return model
    }

    /// Why `heads` cannot be split over `ranks`, or nil.
    public static func headSplitProblem(heads: Int, ranks: Int) -> String? {
        guard ranks >= 1 else { return "sequence parallelism needs at least one rank, got \(ranks)" }
        guard heads % ranks != 0 else { return nil }
        let fits = (1...heads).filter { heads % $0 == 0 }.map(String.init).joined(separator: ", ")
        return "sequence parallelism splits the model's \(heads) attention heads over the ranks: \(heads) heads "
            + "do not divide by \(ranks) ranks (ranks that fit: \(fits))"
    }

    public func encodePrompt(_ embedding: Tensor) throws -> WanDiT.PromptContext {
        let copies = try communicator.broadcast(try onRankZero(embedding, "WanDiT.encodePrompt"), from: 0)
        let contexts = try replicas.indices.map { r in
            try communicator.streams[r].bindDevice()
            return try replicas[r].encodePrompt(copies[r])
        }
        try communicator.streams[0].bindDevice()
        return WanDiT.PromptContext(crossKV: contexts[0].crossKV, ranks: contexts, scheme: .sequence)
    }

    /// `WanDiT.forward` over the ranks: latents given on (or handed to) rank 0, the velocity on rank 0.
    public func forward(_ latents: Tensor, timestep t: Float, prompt: WanDiT.PromptContext, cache: WanKVCache,
                 access: WanDiT.CacheAccess) throws -> Tensor? {
        let c = config, n = ranks, op = "WanDiT.forward (sequence parallel)"
        let grid = try checkedGrid(latents, cache: cache, prompt: prompt, op: op), frames = grid.frames
        let shards = TokenShards(tokensPerFrame: grid.tokensPerFrame, ranks: n)

        var (x, e, e0) = try embedded(latents, grid: grid, timestep: t, op: op) { r, tokens in
            try shards.rows(of: try tokens.reshaped([frames, grid.tokensPerFrame, c.dim]), rank: r)
        }
        let rope = RoPEGrid(frames: frames, height: grid.height, width: grid.width, frameOffset: access.startFrame)
        let written = cache.plan(startFrame: access.startFrame, frames: frames)
        for layer in 0..<c.layers {
            let skipOutput = layer == c.layers - 1 && !access.needsOutput
            x = try blockForward(layer: layer, x: x, e0: e0, grid: grid, shards: shards, rope: rope,
                                 prompt: prompt, cache: cache, written: written, skipOutput: skipOutput)
        }
        cache.commit(written)
        defer { try? communicator.streams[0].bindDevice() }      // the caller goes on with rank 0's stream
        guard access.needsOutput else { return nil }
        // The head is token-local: each rank projects its rows, rank 0 gathers and unpatchifies.
        let parts = try (0..<n).map { r in
            try communicator.streams[r].bindDevice()
            let h = try replicas[r].weights.head.projected(x[r], timeEmbedding: e[r])  // [F, perRank, p*p*C]
            return try communicator.send(h, from: r, to: 0)
        }
        let head = replicas[0].weights.head
        try communicator.streams[0].bindDevice()
        return try head.unpatchified(try shards.joined(parts, on: communicator.streams[0]), grid: grid)
    }

    /// One transformer block over the ranks' rows `x[r]` `[F, perRank, dim]` (the layers of `WanDiT.blockForward`).
    private func blockForward(layer: Int, x: [Tensor], e0: [Tensor], grid: WanDiT.PatchGrid, shards: TokenShards,
                              rope: RoPEGrid, prompt: WanDiT.PromptContext, cache: WanKVCache,
                              written: WanKVCache.WritePlan, skipOutput: Bool) throws -> [Tensor] {
        let c = config, n = ranks, streams = communicator.streams
        let (frames, rows, headsPerRank) = (grid.frames, shards.perRank, c.heads / n)
        let everyFrame = 0..<frames, framed = [frames, rows, c.dim], flat = [1, frames * rows, c.dim]
        // q (unless only the cache is refreshed), k, v stacked on the frame axis.
        let projections = skipOutput ? 2 : 3

        // Token-local: adaLN, q/k/v projections and the q/k RMS norms (over all heads, so before the exchange).
        var modulations: [WanDiT.Modulation.Modulated] = []
        var outgoing: [[Tensor]] = []             // [i][j]: rank i's rows of rank j's heads
        for r in 0..<n {
            let b = replicas[r].weights.blocks[layer], a = b.selfAttention, be = streams[r]
            try be.bindDevice()
            let mod = try b.modulation(e0[r])                                              // [6, F, dim]
            modulations.append(mod)
            let h = try a.k.modulatedInput(x[r], scale: try mod(.attentionScale, frames: everyFrame),
                                           shift: try mod(.attentionShift, frames: everyFrame), eps: c.eps, as: flat)
            var parts = [try a.normK(try a.k(h)), try a.v(h)]
            if !skipOutput { parts.insert(try a.normQ(try a.q(h)), at: 0) }
            let stacked = try be.concat(try parts.map { try $0.reshaped([frames, rows, c.heads, c.headDim]) }, axis: 0)
            outgoing.append(try (0..<n).map { j in                                         // [P*F, rows, H/N, D]
                try be.slice(stacked, axis: 2, start: j * headsPerRank, length: headsPerRank)
            })
        }
        let incoming = try communicator.allToAll(outgoing)

        // Head-sharded: RoPE, the cache and attention over all rows of this rank's heads.
        var answers: [[Tensor]] = []              // [j][i]: rank j's heads of rank i's rows
        for j in 0..<n {
            let be = streams[j], shard = cache.shards[j], a = replicas[j].weights.blocks[layer].selfAttention
            try be.bindDevice()
            let all = try shards.joined(incoming[j], on: be)                                // [P*F, tpf, H/N, D]
            func projection(_ p: Int) throws -> Tensor {                                    // [1, L, H/N, D]
                try all.narrowed(axis: 0, start: p * frames, length: frames)
                    .reshaped([1, grid.tokens, headsPerRank, c.headDim])
            }
            let keys = try be.rope3d(try projection(projections - 2), grid: rope)
            try shard.write(layer: layer, keys: keys, values: try projection(projections - 1), plan: written)
            if skipOutput { continue }
            let query = try be.rope3d(try projection(0), grid: rope)
            let (k, v) = try shard.attended(layer: layer, plan: written)
            let y = try a.attend(query, keys: k, values: v, precision: replicas[j].attentionPrecision)
            let padded = try shards.paddedRows(try y.reshaped([frames, grid.tokensPerFrame, headsPerRank, c.headDim]))
            answers.append(try (0..<n).map { i in                                           // [F, rows, H/N, D]
                try be.slice(padded, axis: 1, start: i * rows, length: rows)
            })
        }
        if skipOutput { return x }
        let returned = try communicator.allToAll(answers)

        // Token-local again: output projection, cross-attention and feed-forward on the rank's rows.
        return try (0..<n).map { i in
            let b = replicas[i].weights.blocks[layer], be = streams[i], mod = modulations[i]
            try be.bindDevice()
            let heads = try be.concat(returned[i], axis: 2).reshaped(flat)                 // [1, F*rows, dim]
            let y = try b.selfAttention.o(.rows(heads))
            var out = try be.gatedResidual(x[i], try y.reshaped(framed), gate: try mod(.attentionGate, frames: everyFrame))
            let normed = try b.crossAttentionNorm.map { try $0(out) } ?? out
            out = try b.crossAttention(try normed.reshaped(flat), prompt: prompt.ranks[i].crossKV[layer],
                                       adding: try out.reshaped(flat)).reshaped(framed)
            let f = try b.ffn.up.modulatedInput(out, scale: try mod(.ffnScale, frames: everyFrame),
                                                shift: try mod(.ffnShift, frames: everyFrame), eps: c.eps, as: framed)
            return try be.gatedResidual(out, try b.ffn(f).reshaped(framed), gate: try mod(.ffnGate, frames: everyFrame))
        }
    }
}

extension WanDiT {
    /// The model spread over `communicator`'s ranks by sequence parallelism: `replicas[r]` is the same
    /// model (configuration, weights, FP8 choice) on rank r's stream (`communicator.streams[r]`). Inputs
    /// and outputs are on rank 0's stream; caches come from `makeCache` (sharded by heads), prompts from
    /// `encodePrompt` (one copy per rank). The attention heads must divide by the rank count.
    public static func sequenceParallel(_ replicas: [WanDiT], communicator: any Communicator) throws -> WanDiT {
        let n = communicator.ranks
        guard replicas.count == n, let first = replicas.first else {
            throw ReelError.input("sequence parallelism over \(n) ranks needs \(n) replicas of the model, got \(replicas.count)")
        }
        if let problem = SequenceParallelism.headSplitProblem(heads: first.config.heads, ranks: n) {
            throw ReelError.input(problem)
        }
        for (r, m) in replicas.enumerated() {
            guard m.parallelism == nil else { throw ReelError.input("replica \(r) is already spread over devices") }
            guard m.backend === communicator.streams[r] else {
                throw ReelError.input("replica \(r) runs on \(m.backend.name); rank \(r) of \(communicator.name) is "
                                      + "\(communicator.streams[r].name): load each replica on its rank's stream")
            }
            guard m.config == first.config, m.quantization == first.quantization, m.dtype == first.dtype else {
                throw ReelError.input("replica \(r) differs from replica 0 (configuration, dtype or quantization)")
            }
        }
        return SequenceParallelism(communicator: communicator, replicas: replicas).map { $0 }
    }

    /// `load(from:...)` once per rank of `communicator`, on its stream, as one sequence-parallel model.
    public static func loadSequenceParallel(from source: any TensorSource, layout: Layout? = nil, heads: Int? = nil,
                                            lora: (any TensorSource)? = nil, loraScale: Float = 1,
                                            communicator: any Communicator, dtype: DType = .f32) throws -> WanDiT {
        let first = try load(from: source, layout: layout, heads: heads, lora: lora, loraScale: loraScale,
                             backend: communicator.streams[0], dtype: dtype)
        if let problem = SequenceParallelism.headSplitProblem(heads: first.config.heads, ranks: communicator.ranks) {
            throw ReelError.input(problem)
        }
        let rest = try communicator.streams.dropFirst().map {
            try load(from: source, layout: layout, heads: heads, lora: lora, loraScale: loraScale, backend: $0, dtype: dtype)
        }
        return try sequenceParallel([first] + rest, communicator: communicator)
    }
}
