import Foundation

/// Elementwise functions of one tensor.
public enum UnaryOp: String, CaseIterable, Sendable {
    case silu
    /// GELU with the tanh approximation (PyTorch `approximate="tanh"`), used by Wan and umT5.
    case geluTanh
    /// GELU with erf (PyTorch's default).
    case gelu
    case relu
    case tanh
    case sigmoid
    case exp
    case neg
    case square
    /// 1 / sqrt(x) (x > 0; the DiT's q/k norm split over tensor-parallel ranks).
    case rsqrt
}

/// Elementwise functions of two tensors, with NumPy broadcasting.
public enum BinaryOp: String, CaseIterable, Sendable {
    case add, sub, mul, div, maximum, minimum
}

/// Zero padding of a convolution, per spatial axis (before, after).
/// A causal temporal convolution pads time in front only: `t: (2, 0)` for a kernel of 3.
public struct ConvPadding: Sendable, Equatable {
    public var t: (Int, Int)
    public var h: (Int, Int)
    public var w: (Int, Int)
    public init(t: (Int, Int) = (0, 0), h: (Int, Int) = (0, 0), w: (Int, Int) = (0, 0)) {
        self.t = t; self.h = h; self.w = w
    }
    /// Symmetric padding in h and w, causal padding in t.
    public static func causal(t: Int, hw: Int) -> ConvPadding { ConvPadding(t: (t, 0), h: (hw, hw), w: (hw, hw)) }
    public static func == (a: ConvPadding, b: ConvPadding) -> Bool {
        a.t == b.t && a.h == b.h && a.w == b.w
    }
}

/// The token grid that 3D RoPE rotates: tokens ordered (frame, row, column).
public struct RoPEGrid: Sendable, Equatable {
    public var frames: Int
    public var height: Int
    public var width: Int
    /// Absolute index of the first frame (LongLive's `current_start / tokens_per_frame`). Unbounded.
    public var frameOffset: Int
    public var theta: Double

    public init(frames: Int, height: Int, width: Int, frameOffset: Int = 0, theta: Double = 10_000) {
        self.frames = frames; self.height = height; self.width = width
        self.frameOffset = frameOffset; self.theta = theta
    }

    public var tokens: Int { frames * height * width }

    /// Complex pairs per head given to (time, height, width): Wan splits d/2 pairs as
    /// [d/2 - 2*(d/2/3), d/2/3, d/2/3], e.g. [22, 21, 21] for a head of 128.
    public static func pairSplit(headDim: Int) -> (t: Int, h: Int, w: Int) {
        let c = headDim / 2
        return (c - 2 * (c / 3), c / 3, c / 3)
    }

    /// Angular frequency of pair `j` within a part of `pairs` pairs: theta^(-2j / (2*pairs)).
    @inlinable public func frequency(pair j: Int, of pairs: Int) -> Double {
        1.0 / pow(theta, Double(2 * j) / Double(2 * pairs))
    }
}

/// A point in a stream's work that other streams (of any device) can wait for and the host can wait on
/// (a CUDA event; already reached on the CPU). Timed events also say when the point was reached.
public protocol BackendEvent: AnyObject, Sendable {
    /// Blocks the calling thread until the work issued before the event has run.
    func synchronize() throws
    /// Seconds from `earlier` to this event, both recorded with `timing` on streams of one device;
    /// waits for this event.
    func seconds(since earlier: any BackendEvent) throws -> Double
}

/// The op set every backend provides. Models are written once against this protocol.
///
/// Layout conventions:
/// - Matrices and sequences are row-major with the feature axis last: tokens `[B, L, C]`,
///   attention heads `[B, L, H, D]`.
/// - Convolutions are channel-last: video `[N, T, H, W, C]`, weights `[Cout, kt, kh, kw, Cin]`
///   (PyTorch's `[Cout, Cin, kt, kh, kw]` is permuted once at load).
/// - Every op accepts f32, f16 and bf16 inputs, computes in float32 and returns the dtype of its
///   first input unless it says otherwise.
public protocol Backend: AnyObject, Sendable {
    /// "cpu", "cuda:0", ...
    var name: String { get }

    // MARK: Memory

    /// Uninitialized storage for a tensor.
    func allocate(_ shape: Shape, dtype: DType) throws -> Tensor
    /// Copies host bytes (already in `dtype`'s encoding) into a new tensor.
    func upload(_ bytes: UnsafeRawBufferPointer, shape: Shape, dtype: DType) throws -> Tensor
    /// Copies a tensor's bytes (in its dtype's encoding) to host memory of exactly `byteCount` bytes.
    func download(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws
    /// Writes `src` into `dst` at `offset` along `axis` (all other axes equal). Modifies `dst`.
    func copy(_ src: Tensor, into dst: Tensor, axis: Int, at offset: Int) throws
    func fill(_ tensor: Tensor, with value: Float) throws

    // MARK: Streams

    /// The device this stream issues work to (its memory, allocator and plan caches).
    var device: any Device { get }
    /// The performance choices this stream was made with (models read theirs here).
    var tuning: Tuning { get }
    /// Waits until every op issued so far has finished.
    func synchronize() throws
    /// A backend for the same device whose ops run on their own stream (the CPU returns itself).
    func makeStream() throws -> any Backend
    /// Marks the point reached by this stream.
    func recordEvent() throws -> any BackendEvent
    /// Marks the point reached by this stream, with a timestamp (`BackendEvent.seconds(since:)`).
    func recordTimedEvent() throws -> any BackendEvent
    /// Makes later ops on this stream wait for `event`.
    func wait(for event: any BackendEvent) throws

    // MARK: Linear algebra

    /// `a [..., M, K] x b` + bias, with `b` of `[N, K]` when `transposeB` (a Linear weight) or
    /// `[K, N]`, or batched `[batch, K|N, N|K]` matching `a [batch, M, K]`. Bias `[N]`.
    func matmul(_ a: Tensor, _ b: Tensor, transposeB: Bool, bias: Tensor?) throws -> Tensor

    /// softmax(q k^T * scale + bias) v, per head, never materializing more than a tile of scores.
    /// q `[B, Lq, H, D]`, k `[B, Lk, H, D]`, v `[B, Lk, H, Dv]` -> `[B, Lq, H, Dv]`.
    /// `bias`, when given, is `[H, Lq, Lk]` and added to the scores (umT5's position bias).
    func attention(query: Tensor, key: Tensor, value: Tensor, scale: Float, bias: Tensor?) throws -> Tensor
    /// `attention` (no bias, D = Dv) computed in FP8 E4M3 (`--attention fp8`), as cuDNN's FP8 SDPA graph:
    /// Q, K, V quantized with one scale each (`FP8Attention`), S = (Q8 K8^T) * scale * descaleQ * descaleK in
    /// float32, P = softmax(S) rounded to E4M3 at scale 448, O = (P8 V8) * descaleP * descaleV rounded to E4M3
    /// at O's scale, returned in q's dtype. About 3 mantissa bits of error per rounding, never the default.
    func fp8Attention(query: Tensor, key: Tensor, value: Tensor, scale: Float) throws -> Tensor

    // MARK: Normalization (over the last axis)

    /// (x - mean) / sqrt(var + eps) * weight + bias; weight and bias optional.
    func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) throws -> Tensor
    /// x / sqrt(mean(x^2) + eps) * weight.
    func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) throws -> Tensor
    /// x / max(||x||_2, eps) * scale * weight: the Wan VAE's `RMS_norm` (scale = sqrt(C)).
    func l2Norm(_ x: Tensor, weight: Tensor?, scale: Float, eps: Float) throws -> Tensor
    /// Softmax over the last axis.
    func softmax(_ x: Tensor) throws -> Tensor

    // MARK: Position

    /// Rotates adjacent pairs (x[2i], x[2i+1]) of each head of `x [B, L, H, D]` by Wan's 3D RoPE,
    /// with L = grid.tokens. Angles are computed in float64 from absolute positions (no table).
    func rope3d(_ x: Tensor, grid: RoPEGrid) throws -> Tensor

    // MARK: Elementwise

    func unary(_ op: UnaryOp, _ x: Tensor) throws -> Tensor
    func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) throws -> Tensor
    /// alpha * x + beta * y (same shapes), e.g. the flow-matching step.
    func axpby(_ alpha: Float, _ x: Tensor, _ beta: Float, _ y: Tensor) throws -> Tensor
    /// x * scale + bias with scalars.
    func affine(_ x: Tensor, scale: Float, bias: Float) throws -> Tensor
    func clamp(_ x: Tensor, min: Float, max: Float) throws -> Tensor
    /// Video frames in [-1, 1] as 8-bit values (`uint8`, same shape): `RGB8.byte(_:)` of each element, so
    /// that a frame leaves the device as one byte a channel (the Presenter stage).
    func rgb8(_ frames: Tensor) throws -> Tensor
    /// x * (1 + scale) + shift, with scale and shift broadcast against x (DiT adaLN).
    func modulate(_ x: Tensor, scale: Tensor, shift: Tensor) throws -> Tensor

    // MARK: Fused (each has a default built from the ops above; backends override for speed)

    /// LayerNorm without affine over the last axis, then `* (1 + scale) + shift`:
    /// x `[G, R, C]`, scale and shift `[G, 1, C]` or `[1, 1, C]` (the DiT's per-frame adaLN).
    func modulatedLayerNorm(_ x: Tensor, scale: Tensor, shift: Tensor, eps: Float) throws -> Tensor
    /// `x + y * gate`: x and y `[G, R, C]`, gate `[G, 1, C]` or `[1, 1, C]` (the DiT's gated residual).
    func gatedResidual(_ x: Tensor, _ y: Tensor, gate: Tensor) throws -> Tensor
    /// RMSNorm over each token's whole row (all heads, as Wan's `norm_q` / `norm_k` over dim) times
    /// `weight [H * D]`, then `rope3d`: x `[B, L, H, D]` (the DiT's self-attention q and k).
    func rmsNormRoPE(_ x: Tensor, weight: Tensor?, eps: Float, grid: RoPEGrid) throws -> Tensor
    /// `l2Norm` then SiLU (the Wan VAE's RMS_norm followed by its activation).
    func l2NormSiLU(_ x: Tensor, weight: Tensor?, scale: Float, eps: Float) throws -> Tensor
    /// GELU (tanh approximation) of `x W^T + b`: x `[..., K]`, a Linear weight `[N, K]`, bias `[N]`
    /// (the DiT's first FFN layer, whose output is the largest activation of a block).
    func linearGELU(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor
    /// `x W^T + b + residual` (residual of the output's shape): the add done by the GEMM where the
    /// backend can (the DiT's cross-attention output projection and its residual).
    func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, adding residual: Tensor) throws -> Tensor
    /// `x W^T + b` written into `out` (the output's element count and dtype; e.g. a view of a KV
    /// cache, so that no copy follows).
    func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor) throws
    /// `rmsNormRoPE` written into `out` (x's element count and dtype).
    func rmsNormRoPE(_ x: Tensor, weight: Tensor?, eps: Float, grid: RoPEGrid, into out: Tensor) throws
    /// `l2NormSiLU` written into `out` (x's element count and dtype; e.g. a frame of a Wan VAE
    /// causal cache, so that no copy follows).
    func l2NormSiLU(_ x: Tensor, weight: Tensor?, scale: Float, eps: Float, into out: Tensor) throws

    // MARK: Quantized linears (FP8, INT8)

    /// Each row of `x [..., K]` as 8-bit codes of `format` (FP8 E4M3 or INT8) with a float32 scale of
    /// its own: scale = max|row| / Q (1 for a row of zeros), values = x * (Q / max|row|) rounded to
    /// nearest even, Q = 448 for FP8 E4M3, 127 for INT8 (codes in [-127, 127]) (`RowQuantized`).
    func quantizeRows(_ x: Tensor, to format: DType) throws -> RowQuantized
    /// `x W^T + b` from operands quantized per row to the same format (`x [..., K]` per token, the Linear
    /// weight `[N, K]` per output channel): the products summed (float32 for FP8, exactly in int32 for
    /// INT8), then times both rows' scales, plus the bias, through the tanh GELU with `gelu`, plus
    /// `residual` (the output's shape), in x's source dtype; written into `out` when given (the
    /// result's element count and dtype).
    func quantizedLinear(_ x: RowQuantized, weight: RowQuantized, bias: Tensor?, gelu: Bool,
                         adding residual: Tensor?, into out: Tensor?) throws -> Tensor
    /// `quantizeRows(modulatedLayerNorm(x, ...), to: format)`, the same codes and scales, where the
    /// backend can without writing the 16-bit rows (the DiT's adaLN before a quantized layer).
    func modulatedLayerNormQuantized(_ x: Tensor, scale: Tensor, shift: Tensor, eps: Float,
                                     to format: DType) throws -> RowQuantized
    /// `q`'s rows back as floats, written into `out` (q's element count, a float dtype): each value
    /// times its row's scale in float32, rounded once to `out`'s dtype (the FP8 KV cache read before attention).
    /// FP8 E4M3 or INT8 rows.
    func dequantizeRows(_ q: RowQuantized, into out: Tensor) throws

    // MARK: Convolution

    /// 3D convolution, channel-last: x `[N, T, H, W, Cin]`, weight `[Cout, kt, kh, kw, Cin]`,
    /// bias `[Cout]` -> `[N, T', H', W', Cout]`.
    func conv3d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int, Int), padding: ConvPadding) throws -> Tensor
    /// `conv3d(x) + bias + residual` (residual of the output's shape): the sum written once where the
    /// backend can fuse it into the convolution (the Wan VAE's residual blocks).
    func conv3d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int, Int), padding: ConvPadding,
                adding residual: Tensor) throws -> Tensor
    /// Nearest-neighbour upsampling of the two axes before the channel axis: `[..., H, W, C]`.
    func upsampleNearest(_ x: Tensor, scaleH: Int, scaleW: Int) throws -> Tensor

    // MARK: Layout

    func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor
    /// A copy of `length` entries along `axis` from `start`.
    func slice(_ x: Tensor, axis: Int, start: Int, length: Int) throws -> Tensor
    /// Reorders axes: output axis i is input axis `order[i]`.
    func permute(_ x: Tensor, _ order: [Int]) throws -> Tensor
    func cast(_ x: Tensor, to dtype: DType) throws -> Tensor
    /// Rows of `table [V, C]` picked by `ids` (int32 or int64, any shape) -> `[ids..., C]`.
    func embedding(_ ids: Tensor, table: Tensor) throws -> Tensor

    // MARK: Random

    /// Standard normal samples from the shared Philox stream: element i of the result is
    /// `PhiloxNormal.sample(seed: seed, index: offset + i)` on every backend.
    func randomNormal(_ shape: Shape, seed: UInt64, offset: UInt64, dtype: DType) throws -> Tensor
}

// MARK: - Conveniences built on the protocol.

extension Backend {
    public func modulatedLayerNorm(_ x: Tensor, scale: Tensor, shift: Tensor, eps: Float) throws -> Tensor {
        try modulate(try layerNorm(x, weight: nil, bias: nil, eps: eps), scale: scale, shift: shift)
    }

    public func gatedResidual(_ x: Tensor, _ y: Tensor, gate: Tensor) throws -> Tensor {
        try binary(.add, x, try binary(.mul, y, gate))
    }

    public func rmsNormRoPE(_ x: Tensor, weight: Tensor?, eps: Float, grid: RoPEGrid) throws -> Tensor {
        try require(x.rank == 4, "rmsNormRoPE", "expected x [B, L, H, D], got \(x.shape)")
        let rows = try x.reshaped([x.shape[0], x.shape[1], x.shape[2] * x.shape[3]])
        return try rope3d(try rmsNorm(rows, weight: weight, eps: eps).reshaped(x.shape), grid: grid)
    }

    public func l2NormSiLU(_ x: Tensor, weight: Tensor?, scale: Float, eps: Float) throws -> Tensor {
        try unary(.silu, try l2Norm(x, weight: weight, scale: scale, eps: eps))
    }

    public func conv3d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int, Int), padding: ConvPadding,
                       adding residual: Tensor) throws -> Tensor {
        let y = try conv3d(x, weight: weight, bias: bias, stride: stride, padding: padding)
        try require(residual.shape == y.shape, "conv3d", "residual \(residual.shape) differs from the output \(y.shape)")
        return try binary(.add, y, residual)
    }

    public func linearGELU(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        try require(weight.rank == 2, "linearGELU", "expected a Linear weight [N, K], got \(weight.shape)")
        return try unary(.geluTanh, try linear(x, weight: weight, bias: bias))
    }

    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, adding residual: Tensor) throws -> Tensor {
        let y = try linear(x, weight: weight, bias: bias)
        try require(residual.shape == y.shape, "linear", "residual \(residual.shape) differs from the output \(y.shape)")
        return try binary(.add, y, residual)
    }

    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor) throws {
        try copyWhole(try linear(x, weight: weight, bias: bias), into: out, op: "linear")
    }

    public func rmsNormRoPE(_ x: Tensor, weight: Tensor?, eps: Float, grid: RoPEGrid, into out: Tensor) throws {
        try copyWhole(try rmsNormRoPE(x, weight: weight, eps: eps, grid: grid), into: out, op: "rmsNormRoPE")
    }

    public func l2NormSiLU(_ x: Tensor, weight: Tensor?, scale: Float, eps: Float, into out: Tensor) throws {
        try copyWhole(try l2NormSiLU(x, weight: weight, scale: scale, eps: eps), into: out, op: "l2NormSiLU")
    }

    /// `y` copied into `out` of the same element count and dtype (its shape may differ).
    public func copyWhole(_ y: Tensor, into out: Tensor, op: String) throws {
        try require(out.count == y.count && out.dtype == y.dtype, op,
                    "output \(out.shape) \(out.dtype) does not hold the result \(y.shape) \(y.dtype)")
        try copy(try y.reshaped(out.shape), into: out, axis: 0, at: 0)
    }

    /// `x W^T + b` for a PyTorch Linear weight `[out, in]`.
    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) throws -> Tensor {
        try matmul(x, weight, transposeB: true, bias: bias)
    }

    public func add(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary(.add, a, b) }
    public func mul(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary(.mul, a, b) }

    public func zeros(_ shape: Shape, dtype: DType = .f32) throws -> Tensor {
        let t = try allocate(shape, dtype: dtype)
        try fill(t, with: 0)
        return t
    }

    /// 2D convolution, channel-last: x `[N, H, W, Cin]`, weight `[Cout, kh, kw, Cin]`.
    public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int) = (1, 1),
                       padding: (Int, Int) = (0, 0)) throws -> Tensor {
        try require(x.rank == 4 && weight.rank == 4, "conv2d", "expected x [N,H,W,C] and weight [Cout,kh,kw,Cin], got \(x.shape) and \(weight.shape)")
        let x5 = try x.reshaped([x.shape[0], 1, x.shape[1], x.shape[2], x.shape[3]])
        let w5 = try weight.reshaped([weight.shape[0], 1, weight.shape[1], weight.shape[2], weight.shape[3]])
        let y = try conv3d(x5, weight: w5, bias: bias, stride: (1, stride.0, stride.1),
                           padding: ConvPadding(h: (padding.0, padding.0), w: (padding.1, padding.1)))
        return try y.reshaped([y.shape[0], y.shape[2], y.shape[3], y.shape[4]])
    }

    /// Uploads host floats, converting to `dtype`.
    public func tensor(_ values: [Float], shape: Shape, dtype: DType = .f32) throws -> Tensor {
        try require(values.count == shape.count, "tensor", "\(values.count) values for shape \(shape)")
        let bytes = try HostConversion.encode(values, as: dtype)
        return try bytes.withUnsafeBytes { try upload($0, shape: shape, dtype: dtype) }
    }

    /// Uploads host integers as int32.
    public func tensor(_ values: [Int32], shape: Shape) throws -> Tensor {
        try require(values.count == shape.count, "tensor", "\(values.count) values for shape \(shape)")
        return try values.withUnsafeBytes { try upload($0, shape: shape, dtype: .int32) }
    }

    public func downloadFloats(_ t: Tensor) throws -> [Float] {
        try HostConversion.decode(try downloadBytes(t), from: t.dtype)
    }

    /// A tensor's bytes in its dtype's encoding.
    public func downloadBytes(_ t: Tensor) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: t.byteCount)
        try bytes.withUnsafeMutableBytes { try download(t, into: $0) }
        return bytes
    }
}

extension Backend {
    /// The defaults, for backends without choices to make.
    public var tuning: Tuning { .standard }
}

/// How a model's output value in [-1, 1] becomes an 8-bit channel value: clamped, mapped to [0, 1] and
/// rounded half away from zero (NaN gives 0). Written once here; the CUDA kernel (`rgb8`) computes the same
/// bits (unfused multiply and add).
public enum RGB8 {
    @inline(__always) public static func byte(_ x: Float) -> UInt8 {
        let v = x.isNaN ? 0 : min(max(x, -1), 1) * 0.5 + 0.5
        return UInt8((v * 255).rounded())
    }
}

/// Device memory a backend holds, for benchmarks and memory checks.
public struct MemoryStatistics: Sendable, Equatable {
    /// Bytes in tensors alive now.
    public var inUse: Int
    /// Most bytes in use at once since the last reset.
    public var peak: Int
    /// Bytes reserved from the device (the caching allocator's pool included).
    public var reserved: Int
    public init(inUse: Int, peak: Int, reserved: Int) { self.inUse = inUse; self.peak = peak; self.reserved = reserved }
}

/// Optional capabilities a backend may report.
public protocol MemoryReporting {
    func memoryStatistics() -> MemoryStatistics
    func resetPeakMemory()
}
