import ReelCore

// How a Wan DiT spreads over the ranks of a `Communicator`: sequence parallelism (Ulysses,
// WanDiT+SequenceParallel) or tensor parallelism (Megatron-style, WanDiT+TensorParallel). Both keep the
// model's inputs and outputs on rank 0's stream and its KV cache sharded by heads (`WanKVCache(shardedOver:)`),
// so the generator, the recache and the pipeline around them are the one-device ones.

/// Which scheme spreads the DiT over several devices (`--parallelism`).
public enum DiTParallelScheme: String, Sendable, CaseIterable {
    /// Ulysses: every rank holds all the weights and 1/N of each pass's tokens; two all-to-alls a layer.
    case sequence
    /// Megatron: every rank holds 1/N of the heads and of the FFN's hidden units (1/N of the blocks' weights);
    /// every token on every rank; three all-reduces of the activations a layer (and two small ones for the
    /// q/k norms).
    case tensor

    /// "sequence parallelism (Ulysses)", as reports name it.
    public var name: String {
        switch self {
        case .sequence: "sequence parallelism (Ulysses)"
        case .tensor: "tensor parallelism (Megatron)"
        }
    }
}

/// A Wan DiT spread over the ranks of a communicator (`WanDiT.parallelism`).
public protocol DiTParallelism: AnyObject, Sendable {
    var communicator: any Communicator { get }
    var scheme: DiTParallelScheme { get }
    /// Rank r's model, on rank r's stream: the whole model (sequence) or its share of the weights (tensor).
    var replicas: [WanDiT] { get }
    /// The model again with each replica transformed alike (text length).
    func map(_ transform: (WanDiT) throws -> WanDiT) rethrows -> WanDiT
    /// `WanDiT.encodePrompt` over the ranks: a context per rank (`PromptContext.ranks`).
    func encodePrompt(_ embedding: Tensor) throws -> WanDiT.PromptContext
    /// `WanDiT.forward` over the ranks: latents given on (or handed to) rank 0, the velocity on rank 0.
    func forward(_ latents: Tensor, timestep t: Float, prompt: WanDiT.PromptContext, cache: WanKVCache,
                 access: WanDiT.CacheAccess) throws -> Tensor?
}

extension DiTParallelism {
    public var ranks: Int { replicas.count }

    /// A forward's inputs checked against this model (latents `[F, H, W, inChannels]` of whole patches, a cache
    /// sharded over its ranks at their tokens per frame, a prompt this scheme encoded); their patch grid.
    func checkedGrid(_ latents: Tensor, cache: WanKVCache, prompt: WanDiT.PromptContext, op: String) throws -> WanDiT.PatchGrid {
        let c = replicas[0].config, n = ranks
        try require(latents.rank == 4 && latents.shape[3] == c.inChannels, op,
                    "expected latents [F, H, W, \(c.inChannels)], got \(latents.shape)")
        let (frames, height, width) = (latents.shape[0], latents.shape[1], latents.shape[2])
        try require(height % c.patch == 0 && width % c.patch == 0, op,
                    "latent size \(height)x\(width) is not a multiple of the patch \(c.patch)")
        let grid = WanDiT.PatchGrid(frames: frames, height: height / c.patch, width: width / c.patch)
        try require(cache.shards.count == n && cache.tokensPerFrame == grid.tokensPerFrame, op,
                    "the cache (\(cache.shards.count) shards, \(cache.tokensPerFrame) tokens per frame) is not this "
                    + "model's over \(n) ranks at \(grid.tokensPerFrame) tokens per frame: make it with WanDiT.makeCache")
        try require(prompt.ranks.count == n && prompt.scheme == scheme, op,
                    "the prompt was not encoded by this \(scheme.rawValue)-parallel model (its encodePrompt gives every "
                    + "rank " + (scheme == .sequence ? "a copy)" : "its heads)"))
        return grid
    }

    /// The bytes of the blocks' weights each rank holds (all of them with sequence parallelism, 1/N of them with
    /// tensor parallelism; the small non-block weights left out).
    public func blockWeightBytes() throws -> [Int] {
        try replicas.map { replica in
            var bytes = 0
            for block in replica.weights.blocks {
                _ = try block.mapTensors { t in
                    bytes += t.byteCount
                    return t
                }
            }
            return bytes
        }
    }

    /// A forward's start on every rank: the latents given to each, its patch embedding (through `tokens`, with the
    /// rank: the sequence scheme keeps the rank's shard of the rows) and its time embeddings (`[F, dim]`,
    /// `[6, F, dim]`). Leaves the last rank's stream bound.
    func embedded(_ latents: Tensor, grid: WanDiT.PatchGrid, timestep t: Float, op: String,
                  tokens: (Int, Tensor) throws -> Tensor) throws -> (x: [Tensor], e: [Tensor], e0: [Tensor]) {
        let inputs = try communicator.broadcast(try onRankZero(latents, op), from: 0)
        var x: [Tensor] = [], e: [Tensor] = [], e0: [Tensor] = []
        for r in 0..<ranks {
            try communicator.streams[r].bindDevice()
            let w = replicas[r].weights
            x.append(try tokens(r, try w.patchEmbedding(inputs[r], grid: grid)))             // [1, L, dim] -> rank r's
            let (er, e0r) = try w.timeEmbedding(t, frames: grid.frames)
            e.append(er)
            e0.append(e0r)
        }
        return (x, e, e0)
    }

    /// `tensor` on rank 0's stream: waited for there when it is on rank 0's device, else handed over.
    func onRankZero(_ tensor: Tensor, _ op: String) throws -> Tensor {
        let stream = communicator.streams[0]
        if tensor.backend.device.isSame(as: stream.device) { return try communicator.prepared(tensor, rank: 0, op) }
        return try tensor.handedOver(to: stream, ready: try tensor.backend.recordEvent())
    }
}

extension WanDiT {
    /// `loadSequenceParallel` or `loadTensorParallel`, as `scheme` says.
    public static func loadParallel(_ scheme: DiTParallelScheme, from source: any TensorSource, layout: Layout? = nil,
                                    heads: Int? = nil, lora: (any TensorSource)? = nil, loraScale: Float = 1,
                                    communicator: any Communicator, dtype: DType = .f32) throws -> WanDiT {
        switch scheme {
        case .sequence:
            try loadSequenceParallel(from: source, layout: layout, heads: heads, lora: lora, loraScale: loraScale,
                                     communicator: communicator, dtype: dtype)
        case .tensor:
            try loadTensorParallel(from: source, layout: layout, heads: heads, lora: lora, loraScale: loraScale,
                                   communicator: communicator, dtype: dtype)
        }
    }
}
