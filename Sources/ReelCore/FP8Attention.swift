/// The per-tensor scales of FP8 attention (`Backend.fp8Attention`, `--attention fp8`), one definition for
/// every backend (the CUDA kernels in Kernels/attention.cu compute the same float32 expressions).
///
/// Q, K and V are each quantized to FP8 E4M3 with one scale for the whole tensor, `448 / amax` (E4M3's
/// largest finite value over the tensor's largest magnitude; 1 for a tensor of zeros), and descaled by its
/// inverse `amax / 448` inside the score and output products. The softmax probabilities P lie in [0, 1]:
/// their scale is 448. O is a convex combination of V's rows, so |O| <= amax(V); its scale is
/// `224 / amax(V)`, half the range, because P's codes round up by as much as 1/16 each, so their sum can
/// pass 1 and O's codes would otherwise meet the saturation (a factor of 2 costs no precision in a
/// floating-point format until the subnormals).
public enum FP8Attention {
    /// E4M3's largest finite value.
    public static let codeMax: Float = 448

    /// The scale that maps a tensor of largest magnitude `amax` onto E4M3's range.
    public static func scale(amax: Float) -> Float { amax > 0 ? codeMax / amax : 1 }
    /// Its inverse, applied to products of codes.
    public static func descale(amax: Float) -> Float { amax > 0 ? amax / codeMax : 1 }

    /// P's scale and descale.
    public static let probabilityScale: Float = codeMax
    public static let probabilityDescale: Float = 1 / codeMax

    /// O's scale from V's largest magnitude, and its descale (O's codes back to floats).
    public static func outputScale(valueAmax a: Float) -> Float { a > 0 ? (codeMax / 2) / a : 1 }
    public static func outputDescale(valueAmax a: Float) -> Float { a > 0 ? a / (codeMax / 2) : 1 }

    /// The shapes every backend's `fp8Attention` takes, checked: q [B, Lq, H, D], k and v [B, Lk, H, D] (D = Dv).
    public static func checkedShape(query: Tensor, key: Tensor, value: Tensor, op: String = "fp8Attention") throws
        -> (b: Int, lq: Int, heads: Int, d: Int, lk: Int) {
        try require(query.rank == 4 && key.rank == 4, op,
                    "expected q [B, Lq, H, D], k and v [B, Lk, H, D], got \(query.shape), \(key.shape)")
        let (b, lq, heads, d) = (query.shape[0], query.shape[1], query.shape[2], query.shape[3])
        let lk = key.shape[1]
        try require(key.shape == [b, lk, heads, d] && value.shape == key.shape, op,
                    "k \(key.shape) and v \(value.shape) must both be [B, Lk, H, D] of q \(query.shape) "
                        + "(FP8 attention takes D = Dv)")
        return (b, lq, heads, d, lk)
    }

    /// `x` rounded to the nearest E4M3 value (ties to even, saturating at +-448).
    @inlinable public static func rounded(_ x: Float) -> Float {
        Float8E4M3Bits.toFloat(Float8E4M3Bits.fromFloat(x))
    }
}

extension FP8Attention {
    /// One call's scalars: Q's, K's and V's descales (`descale(amax:)`), O's scale and descale (`outputScale`).
    public struct Scales: Sendable, Equatable {
        public var descaleQ, descaleK, descaleV, outputScale, outputDescale: Float
        public init(descaleQ: Float, descaleK: Float, descaleV: Float, outputScale: Float, outputDescale: Float) {
            self.descaleQ = descaleQ; self.descaleK = descaleK; self.descaleV = descaleV
            self.outputScale = outputScale; self.outputDescale = outputDescale
        }
    }
}

extension Backend {
    /// FP8 attention composed of this backend's ops from E4M3 codes already made (`q8 [B, Lq, H, D]`, `k8` and `v8`
    /// `[B, Lk, H, D]`, FP8 tensors at their per-tensor scales): the reference's arithmetic (CPUBackend+FP8Attention)
    /// through float32 GEMMs, softmax and casts to E4M3 and back, one head and one tile of queries (scores of at most
    /// `scoreBytes`) at a time, written into `out` (`[B, Lq, H, D]`, a float dtype). CUDA's path where cuDNN refuses
    /// a shape's FP8 graph.
    public func composedFP8Attention(q8: Tensor, k8: Tensor, v8: Tensor, scales: FP8Attention.Scales, scale: Float,
                                     into out: Tensor, scoreBytes: Int = 128 << 20) throws -> Tensor {
        let (b, lq, h, d) = (q8.shape[0], q8.shape[1], q8.shape[2], q8.shape[3])
        let lk = k8.shape[1]
        // [B, L, H, D] codes -> [B * H, L, D] float32 codes.
        func heads(_ x8: Tensor) throws -> Tensor {
            try permute(try cast(x8, to: .f32), [0, 2, 1, 3]).reshaped([b * h, x8.shape[1], d])
        }
        func rounded(_ x: Tensor) throws -> Tensor { try cast(try cast(x, to: .fp8e4m3), to: .f32) }
        func scaled(_ x: Tensor, _ factors: Float...) throws -> Tensor {
            try factors.reduce(x) { try affine($0, scale: $1, bias: 0) }
        }
        let (qh, kh, vh) = (try heads(q8), try heads(k8), try heads(v8))
        let tile = max(1, min(lq, scoreBytes / max(4 * lk, 1)))
        var outputs: [Tensor] = []
        for i in 0..<(b * h) {
            let q = try slice(qh, axis: 0, start: i, length: 1).reshaped([lq, d])
            let k = try slice(kh, axis: 0, start: i, length: 1).reshaped([lk, d])
            let v = try slice(vh, axis: 0, start: i, length: 1).reshaped([lk, d])
            var parts: [Tensor] = []
            var start = 0
            while start < lq {
                let rows = min(tile, lq - start)
                let qt = rows == lq ? q : try slice(q, axis: 0, start: start, length: rows)
                let scores = try scaled(try matmul(qt, k, transposeB: true, bias: nil), scale, scales.descaleQ, scales.descaleK)
                let p8 = try rounded(try scaled(try softmax(scores), FP8Attention.probabilityScale))
                let o = try scaled(try matmul(p8, v, transposeB: false, bias: nil), FP8Attention.probabilityDescale,
                                   scales.descaleV, scales.outputScale)
                parts.append(try scaled(try rounded(o), scales.outputDescale))                       // [rows, D]
                start += rows
            }
            outputs.append(try (parts.count == 1 ? parts[0] : try concat(parts, axis: 0)).reshaped([1, lq, d]))
        }
        let stacked = try concat(outputs, axis: 0).reshaped([b, h, lq, d])
        try copy(try cast(try permute(stacked, [0, 2, 1, 3]), to: out.dtype), into: out, axis: 0, at: 0)
        return out
    }

    /// Backends without FP8 attention refuse it.
    public func fp8Attention(query: Tensor, key: Tensor, value: Tensor, scale: Float) throws -> Tensor {
        throw ReelError.unsupported(backend: name, op: "fp8Attention",
                                    message: "FP8 attention runs on the CPU (reference) and CUDA backends")
    }
}
