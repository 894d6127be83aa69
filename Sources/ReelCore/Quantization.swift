/// A matrix stored as FP8 E4M3 with one float32 scale per row: element (r, c) stands for
/// `values[r, c] * scales[r]`. Linear weights are quantized once, at load (a scale per output
/// channel); activations as they are made (a scale per token). See `Backend.quantizeRows`.
public struct RowQuantized: @unchecked Sendable {
    /// `[..., K]` FP8 E4M3 values.
    public let values: Tensor
    /// `[rows]` float32 scales, rows = the product of the leading axes.
    public let scales: Tensor
    /// The dtype the rows were quantized from: `quantizedLinear` returns this dtype.
    public let sourceType: DType

    public init(values: Tensor, scales: Tensor, sourceType: DType) throws {
        try require(values.dtype == .fp8e4m3 && values.rank >= 1, "RowQuantized",
                    "values must be FP8 E4M3 [..., K], got \(values.shape) \(values.dtype)")
        let rows = values.count / max(values.shape.last, 1)
        try require(scales.dtype == .f32 && scales.count == rows, "RowQuantized",
                    "scales must be float32 with one per row (\(rows)), got \(scales.shape) \(scales.dtype)")
        self.values = values; self.scales = scales; self.sourceType = sourceType
    }

    /// K, the length of a row.
    public var columns: Int { values.shape.last }
    public var rows: Int { values.count / max(columns, 1) }

    /// The largest magnitude FP8 E4M3 holds; a row's largest element maps onto it.
    public static let fp8Max: Float = 448

    /// The same rows under another shape of the values (K stays the last axis).
    public func reshaped(_ dims: [Int]) throws -> RowQuantized {
        let v = try values.reshaped(dims)
        try require(v.shape.last == columns, "RowQuantized.reshaped", "rows of \(columns) cannot become \(v.shape)")
        return try RowQuantized(values: v, scales: scales, sourceType: sourceType)
    }

    /// The rows back in float32, `[rows, K]` (values times their row's scale).
    public func dequantized() throws -> Tensor {
        let be = values.backend
        let v = try be.cast(values, to: .f32).reshaped([rows, columns])
        return try be.binary(.mul, v, try scales.reshaped([rows, 1]))
    }
}

extension Backend {
    /// On the host: max|row| in float32, scale = max / 448 (1 for a zero row), values x * (448 / max)
    /// (a float32 product: no division per element on the device) rounded to nearest even and
    /// saturated (`Float8E4M3Bits`). Backends with a device kernel override it with the same arithmetic.
    public func quantizeRows(_ x: Tensor) throws -> RowQuantized {
        try require(x.dtype.isFloatingPoint && x.dtype != .fp8e4m3 && x.rank >= 1, "quantizeRows",
                    "expected float rows [..., K], got \(x.shape) \(x.dtype)")
        let k = x.shape.last, rows = k == 0 ? 0 : x.count / k
        let v = try downloadFloats(x)
        var codes = [UInt8](repeating: 0, count: v.count), scales = [Float](repeating: 1, count: rows)
        for r in 0..<rows {
            let row = v[(r * k)..<((r + 1) * k)]
            let amax = row.reduce(Float(0)) { max($0, abs($1)) }
            scales[r] = amax > 0 ? amax / RowQuantized.fp8Max : 1
            let inverse = amax > 0 ? RowQuantized.fp8Max / amax : 1
            for i in row.indices { codes[i] = Float8E4M3Bits.fromFloat(v[i] * inverse) }
        }
        let values = try codes.withUnsafeBytes { try upload($0, shape: x.shape, dtype: .fp8e4m3) }
        return try RowQuantized(values: values, scales: try tensor(scales, shape: [rows]), sourceType: x.dtype)
    }

    /// On the host: `q.dequantized()` (float32 products) cast to `out`'s dtype. Backends with a device
    /// kernel override it with the same arithmetic.
    public func dequantizeRows(_ q: RowQuantized, into out: Tensor) throws {
        try require(out.dtype.isFloatingPoint && out.dtype != .fp8e4m3 && out.count == q.values.count, "dequantizeRows",
                    "output \(out.shape) \(out.dtype) does not hold the rows \(q.values.shape) as floats")
        try copyWhole(try cast(try q.dequantized(), to: out.dtype), into: out, op: "dequantizeRows")
    }

    public func modulatedLayerNormQuantized(_ x: Tensor, scale: Tensor, shift: Tensor, eps: Float) throws -> RowQuantized {
        try quantizeRows(try modulatedLayerNorm(x, scale: scale, shift: shift, eps: eps))
    }

    /// The arithmetic every backend's FP8 GEMM is held to: both operands dequantized to float32,
    /// one float32 product, bias, GELU and residual in float32, one rounding to x's source dtype.
    public func quantizedLinear(_ x: RowQuantized, weight: RowQuantized, bias: Tensor?, gelu: Bool = false,
                                adding residual: Tensor? = nil, into out: Tensor? = nil) throws -> Tensor {
        try dequantizedLinear(x, weight: weight, bias: bias, gelu: gelu, adding: residual, into: out)
    }

    /// `quantizedLinear` as its definition says, with the backend's float32 ops (the CPU backend's
    /// FP8 linear, and the CUDA backend's for operands its FP8 GEMM does not take).
    public func dequantizedLinear(_ x: RowQuantized, weight: RowQuantized, bias: Tensor?, gelu: Bool,
                                  adding residual: Tensor?, into out: Tensor?) throws -> Tensor {
        let outShape = try quantizedLinearShape(x, weight: weight, bias: bias, adding: residual, into: out)
        var y = try matmul(try x.dequantized(), try weight.dequantized(), transposeB: true,
                           bias: try bias.map { try cast($0, to: .f32) })
        if gelu { y = try unary(.geluTanh, y) }
        if let residual { y = try binary(.add, y, try cast(residual, to: .f32).reshaped(y.shape)) }
        let result = try cast(y, to: x.sourceType).reshaped(outShape)
        guard let out else { return result }
        try copyWhole(result, into: out, op: "quantizedLinear")
        return out
    }

    /// The output shape of `quantizedLinear` (x's leading axes, then N), after checking the operands.
    public func quantizedLinearShape(_ x: RowQuantized, weight: RowQuantized, bias: Tensor?, adding residual: Tensor?,
                                     into out: Tensor?) throws -> Shape {
        let op = "quantizedLinear"
        try require(weight.values.rank == 2, op, "expected a Linear weight [N, K], got \(weight.values.shape)")
        let n = weight.values.shape[0]
        try require(weight.columns == x.columns, op, "inner dimensions differ: x \(x.values.shape), weight \(weight.values.shape)")
        if let bias { try require(bias.count == n, op, "bias has \(bias.count) elements for N = \(n)") }
        var dims = Array(x.values.shape.dims.dropLast())
        dims.append(n)
        let shape = Shape(dims)
        if let residual {
            try require(residual.count == shape.count, op, "residual \(residual.shape) differs from the output \(shape)")
        }
        if let out {
            try require(out.count == shape.count && out.dtype == x.sourceType, op,
                        "output \(out.shape) \(out.dtype) does not hold the result \(shape) \(x.sourceType)")
        }
        try require(residual == nil || out == nil, op, "a residual and an output tensor together")
        return shape
    }
}
