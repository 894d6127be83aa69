import ReelCore

/// FP8 (e4m3) and INT8: rows quantized per row, adaLN straight to quantized rows, linear layers from
/// quantized operands.
extension OpCaseList {
    /// Quantized rows are compared dequantized (the same codes and scales give the same floats). 16-bit
    /// sources go through cuBLASLt's FP8 GEMM (scales per row of each operand); f32 sources and odd sizes
    /// through the float32 product of the dequantized operands, the definition the CPU computes.
    mutating func fp8(_ dt: DType) { quantized(dt, format: .fp8e4m3) }

    /// The FP8 cases with INT8 codes (their names start with "int8": `reel check-ops --filter int8`).
    /// 16-bit sources with K a multiple of 16 and N of 4 go through cuBLASLt's int8 GEMM (int32 sums)
    /// and the scaling epilogue, bit for bit the CPU's sums; the rest through the dequantized float32
    /// product (the same up to float32's rounding of the sum).
    mutating func int8(_ dt: DType) { quantized(dt, format: .int8) }

    private mutating func quantized(_ dt: DType, format: DType) {
        let tag = format == .int8 ? "int8 " : ""
        func check(_ op: String, _ vars: String, _ dt: DType, _ inputs: [InputSpec], factor: Double = 1,
                   _ body: @escaping (any Backend, [Tensor]) throws -> Tensor) {
            self.check(op, tag + vars, dt, inputs, factor: factor, body)
        }
        for (vars, shape) in [("[37, 64] (8-wide)", [37, 64]), ("[19, 75]", [19, 75]),
                              ("DiT [4680, 1536]", [4680, 1536]), ("DiT FFN [4680, 8960]", [4680, 8960])] as [(String, Shape)] {
            if vars.hasPrefix("DiT") && dt != .bf16 { continue }
            check("quantizeRows", vars + " and a zero row", dt, [InputSpec(shape: shape, dtype: dt)]) { b, t in
                let x = try b.concat([t[0], try b.zeros([1, shape.last], dtype: dt)], axis: 0)
                return try b.quantizeRows(x, to: format).dequantized()
            }
        }
        // adaLN straight to FP8 rows (fused for the rows mod_layer_norm_v8 / _wide_v8 take, else the two ops).
        // The GPU's row statistics round differently from the CPU's: where a value sits on an FP8
        // rounding boundary its code moves by a step (f32 rows: factor 100).
        for (vars, x, s) in [("DiT [3, 1560, 1536] by f32 [3, 1, 1536]", [3, 1560, 1536], [3, 1, 1536]),
                             ("14B [3, 1560, 5120] by f32 [3, 1, 5120] (a block a row)", [3, 1560, 5120], [3, 1, 5120]),
                             ("5B [2, 37, 3072] by f32 [2, 1, 3072] (a block a row)", [2, 37, 3072], [2, 1, 3072]),
                             ("[2, 9, 100] by [1, 1, 100] (unfused)", [2, 9, 100], [1, 1, 100])] as [(String, Shape, Shape)] {
            check("modulatedLayerNormQuantized", vars, dt, [InputSpec(shape: x, dtype: dt), InputSpec(shape: s, dtype: .f32),
                                                            InputSpec(shape: s, dtype: .f32)], factor: dt == .f32 ? 100 : 1) { b, t in
                try b.modulatedLayerNormQuantized(t[0], scale: t[1], shift: t[2], eps: 1e-6, to: format).dequantized()
            }
        }
        for (vars, x, n, gelu, residual) in [("[37, 64] x [48, 64]^T + bias", [37, 64], 48, false, false),
                                             ("[37, 64] x [48, 64]^T + bias, GELU", [37, 64], 48, true, false),
                                             ("[2, 19, 80] x [40, 80]^T + bias + residual", [2, 19, 80], 40, false, true),
                                             ("[19, 75] x [41, 75]^T + bias (odd)", [19, 75], 41, false, false),
                                             ("DiT [4680, 1536] x [8960, 1536]^T + bias, GELU", [4680, 1536], 8960, true, false),
                                             ("DiT [4680, 8960] x [1536, 8960]^T + bias", [4680, 8960], 1536, false, false),
                                             ("DiT [1, 4680, 1536] x [1536, 1536]^T + bias + residual", [1, 4680, 1536], 1536, false, true)]
                as [(String, Shape, Int, Bool, Bool)] {
            if vars.hasPrefix("DiT") && dt != .bf16 { continue }
            let k = x.last
            var out = Array(x.dims.dropLast()); out.append(n)
            var inputs = [InputSpec(shape: x, dtype: dt), InputSpec(shape: [n, k], dtype: dt, kind: .scaled(1 / Float(k).squareRoot())),
                          InputSpec(shape: [n], dtype: dt)]
            if residual { inputs.append(InputSpec(shape: Shape(out), dtype: dt)) }
            check("quantizedLinear", vars, dt, inputs, factor: dt == .f32 ? 1 : 2) { b, t in
                try b.quantizedLinear(try b.quantizeRows(t[0], to: format), weight: try b.quantizeRows(t[1], to: format), bias: t[2], gelu: gelu,
                                      adding: residual ? t[3] : nil, into: nil)
            }
        }
        check("quantizedLinear", "[37, 64] x [48, 64]^T + bias into a view at row 5", dt,
              [InputSpec(shape: [37, 64], dtype: dt), InputSpec(shape: [48, 64], dtype: dt, kind: .scaled(0.125)),
               InputSpec(shape: [48], dtype: dt)], factor: dt == .f32 ? 1 : 2) { b, t in
            let big = try b.zeros([50, 48], dtype: dt)
            _ = try b.quantizedLinear(try b.quantizeRows(t[0], to: format), weight: try b.quantizeRows(t[1], to: format), bias: t[2], gelu: false, adding: nil,
                                      into: try big.narrowed(axis: 0, start: 5, length: 37))
            return big
        }
    }
}
