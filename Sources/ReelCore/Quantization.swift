/// A matrix stored as 8-bit codes, FP8 E4M3 or symmetric INT8, with one float32 scale per row:
/// element (r, c) stands for `values[r, c] * scales[r]`. Linear weights are quantized once, at load
/// (a scale per output channel); activations as they are made (a scale per token). See
/// `Backend.quantizeRows`.
public struct RowQuantized: @unchecked Sendable {
    /// `[..., K]` FP8 E4M3 or INT8 values (`RowQuantized.formats`).
    public let values: Tensor
    /// `[rows]` float32 scales, rows = the product of the leading axes.
    public let scales: Tensor
    /// The dtype the rows were quantized from: `quantizedLinear` returns this dtype.
    public let sourceType: DType

    public init(values: Tensor, scales: Tensor, sourceType: DType) throws {
        try require(Self.formats.contains(values.dtype) && values.rank >= 1, "RowQuantized",
                    "values must be FP8 E4M3 or INT8 [..., K], got \(values.shape) \(values.dtype)")
        let rows = values.count / max(values.shape.last, 1)
        try require(scales.dtype == .f32 && scales.count == rows, "RowQuantized",
                    "scales must be float32 with one per row (\(rows)), got \(scales.shape) \(scales.dtype)")
        self.values = values; self.scales = scales; self.sourceType = sourceType
    }

    /// K, the length of a row.
    public var columns: Int { values.shape.last }
    public var rows: Int { values.count / max(columns, 1) }

    /// The code types rows are quantized to.
    public static let formats: [DType] = [.fp8e4m3, .int8]

    /// The largest magnitude FP8 E4M3 holds; a row's largest element maps onto it.
    public static let fp8Max: Float = 448
    /// The largest INT8 code of the symmetric range [-127, 127] (-128 is never written).
    public static let int8Max: Float = 127

    /// The code a row's largest magnitude maps onto in `format` (`formats`).
    public static func largest(_ format: DType) -> Float { format == .int8 ? int8Max : fp8Max }

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
    /// On the host: max|row| in float32, scale = max / Q (1 for a zero row), values x * (Q / max)
    /// (a float32 product: no division per element on the device) rounded to nearest even, with
    /// Q = 448 for FP8 E4M3 (saturated: `Float8E4M3Bits`) and 127 for INT8 (clamped to [-127, 127]).
    /// Backends with a device kernel override it with the same arithmetic.
    public func quantizeRows(_ x: Tensor, to format: DType) throws -> RowQuantized {
        try require(RowQuantized.formats.contains(format), "quantizeRows", "rows quantize to FP8 E4M3 or INT8, not \(format)")
        try require(x.dtype.isFloatingPoint && x.dtype != .fp8e4m3 && x.rank >= 1, "quantizeRows",
                    "expected float rows [..., K], got \(x.shape) \(x.dtype)")
        let k = x.shape.last, rows = k == 0 ? 0 : x.count / k
        let v = try downloadFloats(x), q = RowQuantized.largest(format)
        var codes = [UInt8](repeating: 0, count: v.count), scales = [Float](repeating: 1, count: rows)
        for r in 0..<rows {
            let row = v[(r * k)..<((r + 1) * k)]
            let amax = row.reduce(Float(0)) { max($0, abs($1)) }
            scales[r] = amax > 0 ? amax / q : 1
            let inverse = amax > 0 ? q / amax : 1
            if format == .int8 {
                for i in row.indices {
                    let code = min(max((v[i] * inverse).rounded(.toNearestOrEven), -127), 127)
                    codes[i] = UInt8(bitPattern: Int8(code))
                }
            } else {
                for i in row.indices { codes[i] = Float8E4M3Bits.fromFloat(v[i] * inverse) }
            }
        }
        let values = try codes.withUnsafeBytes { try upload($0, shape: x.shape, dtype: format) }
        return try RowQuantized(values: values, scales: try tensor(scales, shape: [rows]), sourceType: x.dtype)
    }

    /// `quantizeRows(x, to: .fp8e4m3)`: FP8 rows, as before INT8 (the FP8 KV cache's writes).
    public func quantizeRows(_ x: Tensor) throws -> RowQuantized { try quantizeRows(x, to: .fp8e4m3) }

    /// On the host: `q.dequantized()` (float32 products) cast to `out`'s dtype. Backends with a device
    /// kernel override it with the same arithmetic.
    public func dequantizeRows(_ q: RowQuantized, into out: Tensor) throws {
        try require(out.dtype.isFloatingPoint && out.dtype != .fp8e4m3 && out.count == q.values.count, "dequantizeRows",
                    "output \(out.shape) \(out.dtype) does not hold the rows \(q.values.shape) as floats")
        try copyWhole(try cast(try q.dequantized(), to: out.dtype), into: out, op: "dequantizeRows")
    }

    public func modulatedLayerNormQuantized(_ x: Tensor, scale: Tensor, shift: Tensor, eps: Float,
                                            to format: DType) throws -> RowQuantized {
        try quantizeRows(try modulatedLayerNorm(x, scale: scale, shift: shift, eps: eps), to: format)
    }

    /// The arithmetic every backend's quantized GEMM is held to. FP8: both operands dequantized to
    /// float32, one float32 product (`dequantizedLinear`). INT8: the codes' products summed exactly in
    /// int32, then `sum * sx[row] * sw[col]` in float32 (`integerLinear`). Then bias, GELU and residual
    /// in float32, one rounding to x's source dtype.
    public func quantizedLinear(_ x: RowQuantized, weight: RowQuantized, bias: Tensor?, gelu: Bool = false,
                                adding residual: Tensor? = nil, into out: Tensor? = nil) throws -> Tensor {
        if weight.values.dtype == .int8 {
            return try integerLinear(x, weight: weight, bias: bias, gelu: gelu, adding: residual, into: out)
        }
        return try dequantizedLinear(x, weight: weight, bias: bias, gelu: gelu, adding: residual, into: out)
    }

    /// `quantizedLinear` as its FP8 definition says, with the backend's float32 ops (the CPU backend's
    /// FP8 linear, and the CUDA backend's for operands its quantized GEMMs do not take; for INT8 codes
    /// the same up to float32's rounding of the sum).
    public func dequantizedLinear(_ x: RowQuantized, weight: RowQuantized, bias: Tensor?, gelu: Bool,
                                  adding residual: Tensor?, into out: Tensor?) throws -> Tensor {
        let outShape = try quantizedLinearShape(x, weight: weight, bias: bias, adding: residual, into: out)
        let y = try matmul(try x.dequantized(), try weight.dequantized(), transposeB: true,
                           bias: try bias.map { try cast($0, to: .f32) })
        return try quantizedLinearEpilogue(y, x: x, bias: nil, gelu: gelu, adding: residual, shape: outShape, into: out)
    }

    /// `quantizedLinear` for INT8 codes as its definition says, on the host: each output the exact int32
    /// sum of the codes' products (|sum| <= K x 127 x 127), times x's row scale, then the weight's, in
    /// float32; the bias, GELU and residual with the backend's float32 ops. `split` runs its body over
    /// `0..<rows` in ranges (the CPU backend's threads; default: one range).
    public func integerLinear(_ x: RowQuantized, weight: RowQuantized, bias: Tensor?, gelu: Bool,
                              adding residual: Tensor?, into out: Tensor?,
                              splittingRows split: (Int, (Range<Int>) -> Void) -> Void = { n, body in body(0..<n) })
    throws -> Tensor {
        let outShape = try quantizedLinearShape(x, weight: weight, bias: bias, adding: residual, into: out)
        try require(x.values.dtype == .int8, "quantizedLinear", "INT8 weights need INT8 inputs, got \(x.values.dtype)")
        let (m, n, k) = (x.rows, weight.rows, x.columns)
        let widen = { (t: Tensor) throws -> [Int32] in try self.downloadBytes(t).map { Int32(Int8(bitPattern: $0)) } }
        let (a, b) = (try widen(x.values), try widen(weight.values))
        let (sx, sw) = (try downloadFloats(x.scales), try downloadFloats(weight.scales))
        var y = [Float](repeating: 0, count: m * n)
        y.withUnsafeMutableBufferPointer { yp in
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    split(m) { rows in
                        for r in rows {
                            let xr = UnsafeBufferPointer(rebasing: ap[(r * k)..<((r + 1) * k)])
                            for c in 0..<n {
                                let wr = UnsafeBufferPointer(rebasing: bp[(c * k)..<((c + 1) * k)])
                                var sum: Int32 = 0
                                for i in 0..<k { sum &+= xr[i] &* wr[i] }  // exact: |sum| <= K x 16129
                                yp[r * n + c] = Float(sum) * sx[r] * sw[c]
                            }
                        }
                    }
                }
            }
        }
        let yt = try tensor(y, shape: [m, n])
        return try quantizedLinearEpilogue(yt, x: x, bias: bias, gelu: gelu, adding: residual, shape: outShape, into: out)
    }

    /// A quantized GEMM's float32 `[M, N]` product, then + bias, GELU, + residual in float32 and one
    /// rounding to x's source dtype, in `out` when given.
    private func quantizedLinearEpilogue(_ product: Tensor, x: RowQuantized, bias: Tensor?, gelu: Bool,
                                         adding residual: Tensor?, shape: Shape, into out: Tensor?) throws -> Tensor {
        var y = product
        if let bias { y = try binary(.add, y, try cast(bias, to: .f32).reshaped([1, y.shape.last])) }
        if gelu { y = try unary(.geluTanh, y) }
        if let residual { y = try binary(.add, y, try cast(residual, to: .f32).reshaped(y.shape)) }
        let result = try cast(y, to: x.sourceType).reshaped(shape)
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
        try require(weight.values.dtype == x.values.dtype, op,
                    "x in \(x.values.dtype) and the weight in \(weight.values.dtype): both FP8 E4M3 or both INT8")
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
