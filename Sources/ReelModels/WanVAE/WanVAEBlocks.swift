import ReelCore

// The building blocks of the Wan VAEs (2.1 and 2.2), channel-last: activations are [N, T, H, W, C].
// Each block binds its weights by Wan's key names under a prefix (`decoder.middle.0.`).

/// Wan's `CausalConv3d`: zero padding of 2 frames in front only (for a kernel of 3 frames), replaced
/// by the last 2 input frames of the previous chunk when streaming (CACHE_T = 2).
struct CausalConv3d {
    let weight: Tensor   // [Cout, kt, kh, kw, Cin]
    let bias: Tensor?
    let kernelT: Int
    let padHW: Int
    let stride: (Int, Int, Int)
    /// The cache slot of a temporal kernel (kt > 1); nil for kt == 1.
    let slot: Int?
    /// The weights of the one-frame path (`withTimeTaps()`, the layers that get one frame at a time).
    var pairTaps: PairTaps? = nil

    /// A 3-frame kernel split for one output frame from the cache's 2 frames held side by side
    /// (`CausalSlot.pair`) and the new frame: a 2-frame conv over the pair in either of its two
    /// orders in memory, then a 1-frame conv over the new frame adding that.
    struct PairTaps {
        /// Time taps [0, 1] (the pair's slot 0 holds the older frame) and [1, 0] (slot 1 does).
        let pair: [Tensor]
        /// Time tap 2 (the new frame).
        let newest: Tensor
    }

    init(_ w: WeightBinder, _ name: String, cin: Int, cout: Int, kernel: (Int, Int, Int), padHW: Int,
         stride: (Int, Int, Int) = (1, 1, 1), slots: inout SlotAllocator) throws {
        weight = try w.conv3dWeight(name + ".weight", cout: cout, cin: cin, kernel: kernel)
        bias = try w.exactTensor(name + ".bias", [cout])
        kernelT = kernel.0
        self.padHW = padHW
        self.stride = stride
        slot = kernel.0 > 1 ? slots.next() : nil
    }

    /// The convolution of `x` with no temporal padding beyond `padT` frames in front, plus `residual`.
    func conv(_ x: Tensor, padT: Int, adding residual: Tensor? = nil) throws -> Tensor {
        let padding = ConvPadding(t: (padT, 0), h: (padHW, padHW), w: (padHW, padHW))
        guard let residual else { return try x.backend.conv3d(x, weight: weight, bias: bias, stride: stride, padding: padding) }
        return try x.backend.conv3d(x, weight: weight, bias: bias, stride: stride, padding: padding, adding: residual)
    }

    /// Causal convolution continuing the stream in `cache` (zero history when the slot is empty
    /// or 'Rep'); remembers the last `kernelT - 1` frames of the padded input. `residual` is added
    /// to the output (fused where the backend can).
    func callAsFunction(_ x: Tensor, cache: inout CausalCache, adding residual: Tensor? = nil) throws -> Tensor {
        guard let slot, kernelT > 1 else { return try conv(x, padT: 0, adding: residual) }
        if pairTaps != nil, x.shape[1] == 1 {
            return try callAsFunction(like: x, cache: &cache, adding: residual) { dest in
                guard let dest else { return x }
                try x.backend.copy(x, into: dest, axis: 1, at: 0)
                return dest
            }
        }
        let b = x.backend
        var runs: [Tensor] = []
        switch cache.slots[slot] {
        case let .frames(h): runs = h
        case let .pair(frames, next): runs = try pairInTimeOrder(frames, next: next)
        case .empty, .rep: break
        }
        let history = runs.reduce(0) { $0 + $1.shape[1] }
        runs.append(x)
        cache.slots[slot] = .frames(try b.lastFrames(runs, count: kernelT - 1))
        let input = try b.joinFrames(runs)                                        // [N, h + T, H, W, C]
        return try conv(input, padT: kernelT - 1 - history, adding: residual)
    }

    /// One output frame (layers with `pairTaps`) from the frame `make` produces, which it writes
    /// into `make`'s argument when given one: the slot of the cache's pair the new frame takes, so
    /// that no copy moves it there. `like` has the new frame's shape and dtype ([N, 1, H, W, Cin]).
    /// A 2-frame conv over the pair (the older frames, with the bias and `residual`) runs first,
    /// then `make`, then a 1-frame conv over the new frame adding the first's output: faster than three
    /// 1-frame convs (docs/perf-notes.md, session 5).
    /// Without `pairTaps` or for more than one frame: `make(nil)` through the joined convolution.
    func callAsFunction(like x: Tensor, cache: inout CausalCache, adding residual: Tensor? = nil,
                        make: (Tensor?) throws -> Tensor) throws -> Tensor {
        // (`withTimeTaps` gives pair taps only to 3-frame kernels of stride 1.)
        guard let slot, let pairTaps, x.shape[1] == 1 else {
            return try callAsFunction(try make(nil), cache: &cache, adding: residual)
        }
        let b = x.backend
        var frames: Tensor, next: Int, history: Int
        switch cache.slots[slot] {
        case let .pair(f, n): (frames, next, history) = (f, n, 2)
        case let .frames(runs):
            // Continuing a stream that was fed whole chunks: its last frames become the pair.
            let last = try b.lastFrames(runs, count: 2)
            history = last.reduce(0) { $0 + $1.shape[1] }
            let padding = history < 2 ? [try b.zeros(x.shape.replacing(axis: 1, with: 2 - history), dtype: x.dtype)] : []
            // concat copies (even a single run): new frames will be written into the pair.
            (frames, next) = (try b.concat(padding + last, axis: 1), 0)
        case .empty, .rep:
            (frames, next, history) = (try b.zeros(x.shape.replacing(axis: 1, with: 2), dtype: x.dtype), 0, 0)
        }
        let padding = ConvPadding(h: (padHW, padHW), w: (padHW, padHW))
        // The older frames' share, unless there are none yet (zeros: only the bias and residual).
        let partial = history == 0 ? residual
            : try conv3dAdding(frames, weight: pairTaps.pair[next], bias: bias, padding: padding, residual: residual)
        let newFrame: Tensor
        if frames.shape[0] == 1 {
            let dest = try frames.narrowed(axis: 1, start: next, length: 1)
            let made = try make(dest)
            if made.storage !== dest.storage || made.byteOffset != dest.byteOffset { try b.copy(made, into: frames, axis: 1, at: next) }
            newFrame = dest
        } else {
            newFrame = try make(nil)
            try b.copy(newFrame, into: frames, axis: 1, at: next)
        }
        cache.slots[slot] = .pair(frames, next: 1 - next)
        return try conv3dAdding(newFrame, weight: pairTaps.newest, bias: history == 0 ? bias : nil, padding: padding, residual: partial)
    }

    private func conv3dAdding(_ x: Tensor, weight: Tensor, bias: Tensor?, padding: ConvPadding, residual: Tensor?) throws -> Tensor {
        let b = x.backend
        guard let residual else { return try b.conv3d(x, weight: weight, bias: bias, stride: stride, padding: padding) }
        return try b.conv3d(x, weight: weight, bias: bias, stride: stride, padding: padding, adding: residual)
    }

    /// The pair's two frames oldest first (views where the batch is 1, else copies).
    private func pairInTimeOrder(_ frames: Tensor, next: Int) throws -> [Tensor] {
        let b = frames.backend
        func frame(_ i: Int) throws -> Tensor {
            frames.shape[0] == 1 ? try frames.narrowed(axis: 1, start: i, length: 1) : try b.slice(frames, axis: 1, start: i, length: 1)
        }
        return next == 0 ? [try frame(0), try frame(1)] : [try frame(1), try frame(0)]
    }

    /// This conv with its time taps split for one frame at a time (`pairTaps`), for the layers that
    /// get one frame at a time.
    func withTimeTaps() throws -> CausalConv3d {
        guard kernelT == 3, stride == (1, 1, 1) else { return self }
        let b = weight.backend
        let tap = try (0..<3).map { try b.slice(weight, axis: 1, start: $0, length: 1) }
        var c = self
        c.pairTaps = PairTaps(pair: [try b.concat([tap[0], tap[1]], axis: 1), try b.concat([tap[1], tap[0]], axis: 1)], newest: tap[2])
        return c
    }
}

/// Wan's `RMS_norm`: L2-normalize over channels, times sqrt(C) and a per-channel gamma (no bias).
struct ChannelRMSNorm {
    let gamma: Tensor
    let scale: Float

    init(_ w: WeightBinder, _ name: String, dim: Int) throws {
        gamma = try w.vector(name, count: dim)
        scale = Float(dim).squareRoot()
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        // F.normalize's eps is 1e-12: x / max(||x||, 1e-12).
        try x.backend.l2Norm(x, weight: gamma, scale: scale, eps: 1e-12)
    }

    /// The norm followed by SiLU (as every norm of the decoder's residual blocks and head is), fused
    /// where the backend can.
    func silu(_ x: Tensor) throws -> Tensor {
        try x.backend.l2NormSiLU(x, weight: gamma, scale: scale, eps: 1e-12)
    }

    /// `silu(x)` written into `out` when given (and returned), else a new tensor.
    func silu(_ x: Tensor, into out: Tensor?) throws -> Tensor {
        guard let out else { return try silu(x) }
        try x.backend.l2NormSiLU(x, weight: gamma, scale: scale, eps: 1e-12, into: out)
        return out
    }
}

/// [RMS_norm, SiLU, CausalConv3d k3, RMS_norm, SiLU, (Dropout), CausalConv3d k3] + shortcut.
struct ResidualBlock {
    let norm1: ChannelRMSNorm
    let conv1: CausalConv3d
    let norm2: ChannelRMSNorm
    let conv2: CausalConv3d
    let shortcut: CausalConv3d?

    init(norm1: ChannelRMSNorm, conv1: CausalConv3d, norm2: ChannelRMSNorm, conv2: CausalConv3d, shortcut: CausalConv3d?) {
        self.norm1 = norm1; self.conv1 = conv1; self.norm2 = norm2; self.conv2 = conv2; self.shortcut = shortcut
    }

    init(_ w: WeightBinder, _ p: String, cin: Int, cout: Int, slots: inout SlotAllocator) throws {
        norm1 = try ChannelRMSNorm(w, p + ".residual.0.gamma", dim: cin)
        conv1 = try CausalConv3d(w, p + ".residual.2", cin: cin, cout: cout, kernel: (3, 3, 3), padHW: 1, slots: &slots)
        norm2 = try ChannelRMSNorm(w, p + ".residual.3.gamma", dim: cout)
        conv2 = try CausalConv3d(w, p + ".residual.6", cin: cout, cout: cout, kernel: (3, 3, 3), padHW: 1, slots: &slots)
        shortcut = cin == cout ? nil
            : try CausalConv3d(w, p + ".shortcut", cin: cin, cout: cout, kernel: (1, 1, 1), padHW: 0, slots: &slots)
    }

    /// The block with its causal convs' time taps split out (`CausalConv3d.withTimeTaps`).
    func withTimeTaps() throws -> ResidualBlock {
        ResidualBlock(norm1: norm1, conv1: try conv1.withTimeTaps(), norm2: norm2, conv2: try conv2.withTimeTaps(), shortcut: shortcut)
    }

    func callAsFunction(_ x: Tensor, cache: inout CausalCache) throws -> Tensor {
        let h = try shortcut.map { try $0(x, cache: &cache) } ?? x
        // Each norm's output is its conv's input, written into that conv's cache where it can be.
        let y = try conv1(like: x, cache: &cache) { try norm1.silu(x, into: $0) }
        return try conv2(like: y, cache: &cache, adding: h) { try norm2.silu(y, into: $0) }
    }
}

/// Single-head self-attention over the H*W positions of each frame (head dim = C).
struct AttentionBlock {
    let norm: ChannelRMSNorm
    let qkvWeight: Tensor   // [3C, C]
    let qkvBias: Tensor
    let projWeight: Tensor  // [C, C]
    let projBias: Tensor
    let dim: Int

    init(_ w: WeightBinder, _ p: String, dim: Int) throws {
        self.dim = dim
        norm = try ChannelRMSNorm(w, p + ".norm.gamma", dim: dim)
        qkvWeight = try w.exactTensor(p + ".to_qkv.weight", [3 * dim, dim, 1, 1]).reshaped([3 * dim, dim])
        qkvBias = try w.exactTensor(p + ".to_qkv.bias", [3 * dim])
        projWeight = try w.exactTensor(p + ".proj.weight", [dim, dim, 1, 1]).reshaped([dim, dim])
        projBias = try w.exactTensor(p + ".proj.bias", [dim])
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let b = x.backend
        let (n, t, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        let tokens = try norm(x).reshaped([n * t, h * w, c])                      // [NT, HW, C]
        let qkv = try b.linear(tokens, weight: qkvWeight, bias: qkvBias)           // [NT, HW, 3C]
        let q = try b.slice(qkv, axis: 2, start: 0, length: c).reshaped([n * t, h * w, 1, c])
        let k = try b.slice(qkv, axis: 2, start: c, length: c).reshaped([n * t, h * w, 1, c])
        let v = try b.slice(qkv, axis: 2, start: 2 * c, length: c).reshaped([n * t, h * w, 1, c])
        let a = try b.attention(query: q, key: k, value: v, scale: 1 / Float(c).squareRoot(), bias: nil)
        let out = try b.linear(a.reshaped([n * t, h * w, c]), weight: projWeight, bias: projBias)
        return try b.add(out.reshaped([n, t, h, w, c]), x)
    }
}

/// Wan's `Resample`: spatial x2 up/down (nearest + conv 3x3, or zero pad + strided conv 3x3), and in
/// the 3D modes a causal time conv that doubles (up) or halves (down) the frame count.
struct Resample {
    enum Mode: Equatable { case upsample2d, upsample3d, downsample2d, downsample3d }

    let mode: Mode
    let conv: CausalConv3d        // the 2D conv as a one-frame kernel [Cout, 1, 3, 3, Cin]
    let timeConv: CausalConv3d?
    /// Cache slot of the 3D modes' time conv state machine.
    let slot: Int?
    /// Off only in tests: run the decoder's time conv on the first chunk too (a naive causal decode).
    var repFirstChunk = true

    /// - Parameter halvesOnUpsample: whether the upsampling modes' 2D conv halves the channels (Wan2.1's
    ///   `Resample`); Wan2.2's decoder keeps them (vae2_2.py `Resample`: `nn.Conv2d(dim, dim, 3)`).
    init(_ w: WeightBinder, _ p: String, dim: Int, mode: Mode, halvesOnUpsample: Bool = true,
         slots: inout SlotAllocator) throws {
        self.mode = mode
        let up = mode == .upsample2d || mode == .upsample3d
        // The time conv's stream state is this Resample's own slot (its phases differ from a plain
        // causal conv's), so the conv itself takes none.
        var noSlots = SlotAllocator()
        let cout = up && halvesOnUpsample ? dim / 2 : dim
        let weight = try w.conv2dWeight(p + ".resample.1.weight", cout: cout, cin: dim, kernel: 3)
        let bias = try w.exactTensor(p + ".resample.1.bias", [cout])
        conv = CausalConv3d(weight: weight, bias: bias, kernelT: 1, padHW: 0,
                            stride: up ? (1, 1, 1) : (1, 2, 2), slot: nil)
        switch mode {
        case .upsample3d:
            timeConv = try CausalConv3d(w, p + ".time_conv", cin: dim, cout: 2 * dim, kernel: (3, 1, 1), padHW: 0, slots: &noSlots)
            slot = slots.next()
        case .downsample3d:
            timeConv = try CausalConv3d(w, p + ".time_conv", cin: dim, cout: dim, kernel: (3, 1, 1), padHW: 0,
                                        stride: (2, 1, 1), slots: &noSlots)
            slot = slots.next()
        default:
            timeConv = nil
            slot = nil
        }
    }

    func callAsFunction(_ x: Tensor, cache: inout CausalCache) throws -> Tensor {
        let b = x.backend
        switch mode {
        case .upsample2d:
            return try upsample(x)
        case .upsample3d:
            return try upsample(timeUpsample(x, cache: &cache))
        case .downsample2d:
            return try downsample(x)
        case .downsample3d:
            let y = try downsample(x)
            guard let slot, let timeConv else { return y }
            let last = try b.lastFrames([y], count: 1)
            defer { cache.slots[slot] = .frames(last) }
            // First chunk: passes unchanged (Wan stores it and skips the time conv).
            guard case let .frames(previous) = cache.slots[slot] else { return y }
            // [prev, y] -> k=3, stride 2, no padding: 1 + 4 frames -> 2 frames.
            return try timeConv.conv(b.joinFrames(previous + [y]), padT: 0)
        }
    }

    /// Nearest x2 in H and W, then the 3x3 conv (C -> C/2; Wan2.2: C -> C).
    private func upsample(_ x: Tensor) throws -> Tensor {
        let u = try x.backend.upsampleNearest(x, scaleH: 2, scaleW: 2)   // [N, T, 2H, 2W, C]
        return try x.backend.conv3d(u, weight: conv.weight, bias: conv.bias, stride: (1, 1, 1),
                                    padding: ConvPadding(h: (1, 1), w: (1, 1)))
    }

    /// ZeroPad2d((0, 1, 0, 1)), then the 3x3 conv with stride 2.
    private func downsample(_ x: Tensor) throws -> Tensor {
        try x.backend.conv3d(x, weight: conv.weight, bias: conv.bias, stride: (1, 2, 2),
                             padding: ConvPadding(h: (0, 1), w: (0, 1)))
    }

    /// The time conv C -> 2C, its two halves interleaved in time: [N, T, H, W, C] -> [N, 2T, H, W, C].
    /// Wan's 'Rep' state machine: chunk 0 skips it (1 frame stays 1 frame), chunk 1 runs it with zero
    /// history, later chunks continue from the cached last 2 frames.
    private func timeUpsample(_ x: Tensor, cache: inout CausalCache) throws -> Tensor {
        guard let slot, let timeConv else { return x }
        var inner = CausalCache(count: 1)
        switch cache.slots[slot] {
        case .empty where repFirstChunk:
            cache.slots[slot] = .rep
            return x
        case .empty, .rep:
            inner.slots[0] = .empty
        case let .frames(h):
            inner.slots[0] = .frames(h)
        case .pair:
            inner.slots[0] = cache.slots[slot]   // (the time conv has no pair taps: never made here)
        }
        let conv = CausalConv3d(weight: timeConv.weight, bias: timeConv.bias, kernelT: 3, padHW: 0,
                                stride: (1, 1, 1), slot: 0)
        let y = try conv(x, cache: &inner)                                         // [N, T, H, W, 2C]
        cache.slots[slot] = inner.slots[0]
        let (n, t, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        let split = try y.reshaped([n, t, h, w, 2, c])
        return try x.backend.permute(split, [0, 1, 4, 2, 3, 5]).reshaped([n, 2 * t, h, w, c])
    }
}

extension CausalConv3d {
    /// A convolution from already-bound weights.
    init(weight: Tensor, bias: Tensor?, kernelT: Int, padHW: Int, stride: (Int, Int, Int), slot: Int?) {
        self.weight = weight
        self.bias = bias
        self.kernelT = kernelT
        self.padHW = padHW
        self.stride = stride
        self.slot = slot
    }
}
