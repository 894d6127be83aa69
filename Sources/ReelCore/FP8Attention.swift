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

    /// `x` rounded to the nearest E4M3 value (ties to even, saturating at +-448).
    @inlinable public static func rounded(_ x: Float) -> Float {
        Float8E4M3Bits.toFloat(Float8E4M3Bits.fromFloat(x))
    }
}

extension Backend {
    /// Backends without FP8 attention refuse it.
    public func fp8Attention(query: Tensor, key: Tensor, value: Tensor, scale: Float) throws -> Tensor {
        throw ReelError.unsupported(backend: name, op: "fp8Attention", message: "FP8 attention runs on the CPU (reference) and CUDA backends")
    }
}
