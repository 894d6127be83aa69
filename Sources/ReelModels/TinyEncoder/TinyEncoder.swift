import ReelCore

/// The TAEHV tiny video encoder (madebyollin/taehv `taehv.py`, the `encoder.*` half of `taew2_1.pth`):
/// video frames in [0, 1] to Wan2.1 latents, 8x smaller in H and W and 4x fewer in time. 2D convs over
/// each frame, MemBlocks that also see their previous input frame, and TPool layers that fold `stride`
/// consecutive frames into one. Layers (`encoder.N` in the checkpoint):
/// ```
/// 0 conv 3->c, 1 ReLU,
/// 2 TPool(c, 2), 3 conv c->c stride 2, 4-6 MemBlock(c),
/// 7 TPool(c, 2), 8 conv c->c stride 2, 9-11 MemBlock(c),
/// 12 TPool(c, 1), 13 conv c->c stride 2, 14-16 MemBlock(c),
/// 17 conv c->z
/// ```
/// with c = 64 and z = 16 in taew2_1; the width, latent channels and TPool strides are read from the
/// weights. The latents are the DiT's own: taehv applies no scale or shift (its README, "TAEHV does not
/// use any latent scales / shifts"), so they stand where the Wan VAE's `(mu - mean) / std` stands.
/// Immutable; the per-stream state lives in `StreamingTinyEncoder`.
public final class TinyEncoder: @unchecked Sendable {
    public let backend: any Backend
    /// The dtype its weights compute in; frames in another dtype are cast to it first.
    public let dtype: DType
    /// Latent channels (16).
    public let latentChannels: Int
    /// Width of every layer after the input conv (64).
    public let channels: Int
    /// Frames each TPool folds into one (taew2_1: [2, 2, 1], so 4 frames per latent).
    public let timeDownscale: [Int]
    let inputConv: TAEHVConv
    let stages: [Stage]
    let outputConv: TAEHVConv

    /// Folds `stride` consecutive frames into one: a 1x1 conv without bias over their channels
    /// stacked in frame order (taehv's `TPool`: `reshape(-1, stride * C, H, W)`).
    struct TPool {
        let weight: Tensor   // [C, stride * C]; input channel s * C + c is channel c of the group's frame s
        let stride: Int

        /// Pools the frames of `x` `[N, T, H, W, C]` that complete a group, counting the frames left
        /// waiting in `pending` (< stride, from earlier calls) first; the frames of an incomplete group
        /// wait in `pending`. Returns `[N, G, H, W, C]`, or nil when no group completes.
        func callAsFunction(_ x: Tensor, pending: inout Tensor?) throws -> Tensor? {
            let b = x.backend
            let all = try pending.map { try b.concat([$0, x], axis: 1) } ?? x
            let (n, t, h, w, c) = (all.shape[0], all.shape[1], all.shape[2], all.shape[3], all.shape[4])
            let groups = t / stride, used = groups * stride
            pending = used < t ? try b.slice(all, axis: 1, start: used, length: t - used) : nil
            guard groups > 0 else { return nil }
            var g = used < t ? try b.slice(all, axis: 1, start: 0, length: used) : all
            if stride > 1 {
                // [N, G, stride, H, W, C] -> [N, G, H, W, stride, C]
                g = try b.permute(g.reshaped([n, groups, stride, h, w, c]), [0, 1, 3, 4, 2, 5])
            }
            return try b.matmul(g.reshaped([n * groups * h * w, stride * c]), weight, transposeB: true, bias: nil)
                .reshaped([n, groups, h, w, c])
        }
    }

    /// TPool, the conv that halves H and W, then three MemBlocks.
    struct Stage {
        let pool: TPool
        let conv: TAEHVConv  // stride 2, no bias
        let blocks: [TAEHVMemBlock]
    }

    /// What one stream carries between calls: the frames waiting in each TPool (fewer than its
    /// stride) and each MemBlock's last input frame. Its size does not grow with the stream.
    struct State {
        var pooling: [Tensor?]
        var memory: [Tensor?]
        init(stages: Int, memBlocks: Int) {
            pooling = Array(repeating: nil, count: stages)
            memory = Array(repeating: nil, count: memBlocks)
        }
    }

    init(binder w: WeightBinder) throws {
        backend = w.backend
        dtype = w.dtype
        guard let first = w.shape("encoder.0.weight"), first.rank == 4 else {
            throw ReelError.weights(message: "no encoder.0.weight: not a TAEHV checkpoint with an encoder")
        }
        guard first[1] == 3 else {
            throw ReelError.weights(message: "encoder.0.weight takes \(first[1]) channels; Reel's tiny encoder "
                + "supports patch size 1 (3 channels, taew2_1)")
        }
        let c = first[0]
        channels = c
        inputConv = try w.taehvConv("encoder.0", 3, c)
        var stages: [Stage] = []
        for s in 0..<3 {
            let base = 2 + 5 * s
            let poolName = "encoder.\(base).conv.weight"
            guard let p = w.shape(poolName), p.rank == 4, p[0] == c, p[1] % c == 0, [1, 2].contains(p[1] / c),
                  p[2] == 1, p[3] == 1 else {
                let found = w.shape(poolName).map { "\($0)" } ?? "none"
                throw ReelError.weights(message: "\(poolName) has shape \(found), "
                    + "expected [\(c), \(c) * stride, 1, 1] with stride 1 or 2 (TPool)")
            }
            let stride = p[1] / c
            let pool = TPool(weight: try w.exactTensor(poolName, p.dims).reshaped([c, stride * c]), stride: stride)
            stages.append(Stage(pool: pool, conv: try w.taehvConv("encoder.\(base + 1)", c, c, stride: 2, bias: false),
                                blocks: try (2..<5).map { try w.taehvMemBlock("encoder.\(base + $0)", c) }))
        }
        self.stages = stages
        timeDownscale = stages.map(\.pool.stride)
        guard let last = w.shape("encoder.17.weight"), last.rank == 4 else {
            throw ReelError.weights(message: "missing encoder.17.weight (the conv into the latent channels)")
        }
        latentChannels = last[0]
        outputConv = try w.taehvConv("encoder.17", c, latentChannels)
    }

    /// Loads the encoder of a TAEHV checkpoint (`taew2_1.pth` or its safetensors twin); decoder keys
    /// are ignored, every encoder key must be bound.
    public static func load(from source: any TensorSource, on backend: any Backend,
                            dtype: DType = .f32) throws -> TinyEncoder {
        let binder = try WeightBinder(source: FilteredTensorSource(source, excluding: ["decoder."]), rules: [],
                                      backend: backend, dtype: dtype)
        let model = try TinyEncoder(binder: binder)
        try binder.finish()
        return model
    }

    /// Video frames per latent frame (4).
    public var framesPerLatent: Int { timeDownscale.reduce(1, *) }
    /// Video pixels per latent cell along H and W: three stride-2 convs (8).
    public var spatialStride: Int { 8 }

    /// Encodes the next frames `[N, T, H, W, 3]` in [0, 1] of a stream into the latents `[N, T', h, w, z]`
    /// of the groups they complete (nil when none), h = ceil(H / 8). `state` carries the stream between calls.
    ///
    /// Each layer runs over all the frames it has at once, where taehv's sequential form
    /// (`apply_model_with_memblocks_sequential`, used by `encode_video(parallel=False)` and `StreamingTAEHV`)
    /// walks one frame at a time through the layers. The results are the same: the convs and ReLUs act on
    /// each frame alone; a MemBlock's past is its own previous input frame, carried across calls in
    /// `memory`; a TPool groups its input frames (s*k ..< s*(k+1)) counted from the stream's start, the
    /// frames of an unfinished group waiting in `pooling`, as taehv's TPool memory list does.
    func forward(_ frames: Tensor, state: inout State) throws -> Tensor? {
        let b = frames.backend   // the stream the input lives on (the weights serve every stream)
        var x = try b.unary(.relu, inputConv(frames))                              // [N, T, H, W, c]
        var slot = 0
        for (s, stage) in stages.enumerated() {
            // [N, T', H, W, c] with T' = the groups of `stride` frames completed
            guard let pooled = try stage.pool(x, pending: &state.pooling[s]) else { return nil }
            x = try stage.conv(pooled)                                             // [N, T', ceil(H/2), ceil(W/2), c]
            for block in stage.blocks {
                x = try block(x, memory: &state.memory[slot])
                slot += 1
            }
        }
        return try outputConv(x)                                                   // [N, T', h, w, z]
    }

    /// MemBlocks, i.e. slots of stream memory.
    var memBlockCount: Int { stages.reduce(0) { $0 + $1.blocks.count } }

    /// A fresh stream's state.
    func initialState() -> State { State(stages: stages.count, memBlocks: memBlockCount) }
}
