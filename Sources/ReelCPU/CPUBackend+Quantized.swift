import ReelCore

extension CPUBackend {
    /// The definitions (`Backend.quantizedLinear`): FP8 as the float32 product of the dequantized rows,
    /// INT8 as exact int32 sums scaled in float32, its rows spread over the backend's threads.
    public func quantizedLinear(_ x: RowQuantized, weight: RowQuantized, bias: Tensor?, gelu: Bool,
                                adding residual: Tensor?, into out: Tensor?) throws -> Tensor {
        guard weight.values.dtype == .int8 else {
            return try dequantizedLinear(x, weight: weight, bias: bias, gelu: gelu, adding: residual, into: out)
        }
        let work = max(1, weight.rows * x.columns)
        return try integerLinear(x, weight: weight, bias: bias, gelu: gelu, adding: residual, into: out) { rows, body in
            parallelFor(rows, grain: max(1, (1 << 18) / work), body)  // ~256k products a range at least
        }
    }
}
