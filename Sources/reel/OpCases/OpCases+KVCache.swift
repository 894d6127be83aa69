import ReelCore

/// The FP8 KV cache (`--kv-cache fp8`): each (token, head) row of headDim quantized on write, read back into
/// the model's dtype before attention (`Backend.dequantizeRows`). Added after every other check case, so the
/// cases before them keep the inputs they passed with.
extension OpCaseList {
    /// Both backends quantize and dequantize their own: where a value sits on an FP8 rounding boundary its code
    /// moves by a step, as in `quantizeRows`'s cases, which compare the same way.
    mutating func fp8KVCache(_ dt: DType) {
        for (vars, shape) in [("[1, 37, 2, 64] (8-wide)", [1, 37, 2, 64]), ("[1, 19, 3, 75] (odd)", [1, 19, 3, 75]),
                              ("DiT window [1, 18720, 12, 128]", [1, 18720, 12, 128])] as [(String, Shape)] {
            if vars.hasPrefix("DiT") && dt != .bf16 { continue }
            check("dequantizeRows", vars, dt, [InputSpec(shape: shape, dtype: dt)]) { b, t in
                let out = try b.allocate(shape, dtype: dt)
                try b.dequantizeRows(try b.quantizeRows(t[0]), into: out)
                return out
            }
        }
        // Into a view of a larger buffer at token 5, as the cache's scratch is read by a pass attending to
        // fewer slots than it holds; and f32 codes read back into another dtype than they came from.
        check("dequantizeRows", "[1, 37, 2, 64] into a view at token 5 of [1, 50, 2, 64]", dt,
              [InputSpec(shape: [1, 37, 2, 64], dtype: dt)]) { b, t in
            let big = try b.zeros([1, 50, 2, 64], dtype: dt)
            try b.dequantizeRows(try b.quantizeRows(t[0]), into: try big.narrowed(axis: 1, start: 5, length: 37))
            return big
        }
    }

    /// CUDA: reading one layer's attended keys of the 1.3B at 480x832 (12 frames of 1560 tokens) back to bf16,
    /// against one read of the codes and scales and one write of the rows.
    mutating func fp8KVCachePerf() {
        let shape: Shape = [1, 18720, 12, 128], rows = Double(shape.count / 128)
        perf(.cuda, "dequantizeRows", "DiT window [1, 18720, 12, 128] -> bf16", .bf16, [InputSpec(shape: shape, dtype: .bf16)],
             bytes: Double(shape.count) * 3 + rows * 4, build: { b, t in
            let q = try b.quantizeRows(t[0]), out = try b.allocate(shape, dtype: .bf16)
            return { try b.dequantizeRows(q, into: out); return out }
        })
    }
}
