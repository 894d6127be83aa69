import ReelCore

/// Layout and data ops: upsampleNearest, permute, concat, slice, copy, embedding, randomNormal, cast.
extension OpCaseList {
    mutating func layout(_ dt: DType) {
        func spec(_ shape: Shape) -> InputSpec { InputSpec(shape: shape, dtype: dt) }
        check("upsampleNearest", "[1,2,5,6,3] x2 (scalar)", dt, [spec([1, 2, 5, 6, 3])]) { b, t in
            try b.upsampleNearest(t[0], scaleH: 2, scaleW: 2)
        }
        check("permute", "[2,3,5,16] by [0,2,1,3] (16-byte)", dt, [spec([2, 3, 5, 16])]) { b, t in try b.permute(t[0], [0, 2, 1, 3]) }
        check("upsampleNearest", "[1,2,5,6,8] x2", dt, [spec([1, 2, 5, 6, 8])]) { b, t in
            try b.upsampleNearest(t[0], scaleH: 2, scaleW: 2)
        }
        check("concat", "[2,3,4] + [2,5,4] axis 1", dt, [spec([2, 3, 4]), spec([2, 5, 4])]) { b, t in try b.concat(t, axis: 1) }
        check("concat", "[3,4] + [2,4] axis 0", dt, [spec([3, 4]), spec([2, 4])]) { b, t in try b.concat(t, axis: 0) }
        check("slice", "[2,9,5] axis 1 2..<7", dt, [spec([2, 9, 5])]) { b, t in try b.slice(t[0], axis: 1, start: 2, length: 5) }
        check("permute", "[2,3,4,5] by [0,2,1,3]", dt, [spec([2, 3, 4, 5])]) { b, t in try b.permute(t[0], [0, 2, 1, 3]) }
        check("permute", "[2,3,2,3,2,3,2,3] reversed (8 axes)", dt, [spec([2, 3, 2, 3, 2, 3, 2, 3])]) { b, t in
            try b.permute(t[0], [7, 6, 5, 4, 3, 2, 1, 0])
        }
        check("permute", "[2,3,4,5,6,7,2] by [0,1,2,3,4,6,5]", dt, [spec([2, 3, 4, 5, 6, 7, 2])]) { b, t in
            try b.permute(t[0], [0, 1, 2, 3, 4, 6, 5])
        }
        check("copy", "[2,3,4] into [2,7,4] at 2", dt, [spec([2, 3, 4]), spec([2, 7, 4])]) { b, t in
            let dst = try b.concat([t[1]], axis: 0)  // a private copy, since copy modifies its target
            try b.copy(t[0], into: dst, axis: 1, at: 2)
            return dst
        }
        check("embedding", "ids [2,7] int32 into [100,64]", dt,
              [InputSpec(shape: [2, 7], dtype: .int32, kind: .ids(100)), spec([100, 64])]) { b, t in
            try b.embedding(t[0], table: t[1])
        }
        check("randomNormal", "[10007] seed 42 offset 2^33", dt, []) { b, _ in
            try b.randomNormal([10007], seed: 42, offset: 1 << 33, dtype: dt)
        }
        for to in OpCaseList.floats where to != dt {
            check("cast", "[1000] to \(to)", dt, [spec([1000])]) { b, t in try b.cast(try b.cast(t[0], to: to), to: .f32) }
        }
    }

    /// Casts to and from the other types (FP8, integers), and int64 ids.
    mutating func layoutOtherTypes() {
        check("cast", "[1000] f32 to fp8e4m3", .f32, [InputSpec(shape: [1000], dtype: .f32)]) { b, t in
            try b.cast(try b.cast(t[0], to: .fp8e4m3), to: .f32)
        }
        check("cast", "[1000] int32 to int64", .int32, [InputSpec(shape: [1000], dtype: .int32, kind: .ids(1 << 30))]) { b, t in
            try b.cast(try b.cast(t[0], to: .int64), to: .f32)
        }
        check("embedding", "ids [9] int64 into [50,32]", .f32,
              [InputSpec(shape: [9], dtype: .int64, kind: .ids(50)), InputSpec(shape: [50, 32], dtype: .f32)]) { b, t in
            try b.embedding(t[0], table: t[1])
        }
    }

    mutating func layoutPerf() {
        // CPU, f32 at a few million elements.
        let (rows, cols) = (4680, 1536), n = rows * cols
        perf(.cpu, "upsampleNearest", "[4,60,104,96] x2", .f32, [InputSpec(shape: [4, 60, 104, 96], dtype: .f32)],
             bytes: Double(4 * 60 * 104 * 96 * 4 * 5)) { b, t in
            try b.upsampleNearest(t[0], scaleH: 2, scaleW: 2)
        }
        perf(.cpu, "permute", "[1,4680,12,128] -> 0,2,1,3", .f32, [InputSpec(shape: [1, 4680, 12, 128], dtype: .f32)],
             bytes: Double(2 * 4680 * 12 * 128 * 4)) { b, t in
            try b.permute(t[0], [0, 2, 1, 3])
        }
        let half = InputSpec(shape: [rows, cols / 2], dtype: .f32)
        perf(.cpu, "concat", "2 x [4680,768] axis 1", .f32, [half, half], bytes: Double(2 * n * 4)) { b, t in try b.concat(t, axis: 1) }
        perf(.cpu, "cast", "[\(rows),\(cols)] bf16->f32", .bf16, [InputSpec(shape: [rows, cols], dtype: .bf16)],
             bytes: Double(n * 6)) { b, t in
            try b.cast(t[0], to: .f32)
        }
        perf(.cpu, "embedding", "512 ids of [32000,1536]", .f32,
             [InputSpec(shape: [512], dtype: .int32, kind: .ids(32000)), InputSpec(shape: [32000, cols], dtype: .f32)],
             bytes: Double(2 * 512 * cols * 4)) { b, t in
            try b.embedding(t[0], table: t[1])
        }
        perf(.cpu, "randomNormal", "[3,16,60,104]", .f32, [], bytes: Double(3 * 16 * 60 * 104 * 4)) { b, _ in
            try b.randomNormal([3, 16, 60, 104], seed: 5, offset: 0, dtype: .f32)
        }

        // CUDA, bf16 at the DiT's and the VAE's shapes.
        let (tokens, heads, hd, window) = (4680, 12, 128, 18720)
        let act = Double(tokens * heads * hd) * 2
        let heads4 = InputSpec(shape: [1, tokens, heads, hd], dtype: .bf16)
        perf(.cuda, "randomNormal", "[3, 16, 60, 104] f32", .f32, [], bytes: 4 * Double(3 * 16 * 60 * 104)) { b, _ in
            try b.randomNormal([3, 16, 60, 104], seed: 7, offset: 0, dtype: .f32)
        }
        perf(.cuda, "copy (KV write)", "[1, \(tokens), \(heads), \(hd)] into window", .bf16, [heads4], bytes: 2 * act, build: { b, t in
            let cache = try b.allocate([1, window, heads, hd], dtype: .bf16)  // [1, 18720, 12, 128]
            return {
                try b.copy(t[0], into: cache, axis: 1, at: 3 * 1560)
                return cache
            }
        })
        perf(.cuda, "permute", "[1, \(tokens), \(heads), \(hd)] -> [1, \(heads), \(tokens), \(hd)]", .bf16, [heads4],
             bytes: 2 * act) { b, t in
            try b.permute(t[0], [0, 2, 1, 3])
        }
        perf(.cuda, "upsampleNearest", "[1, 240, 416, 192] x2", .bf16, [InputSpec(shape: [1, 240, 416, 192], dtype: .bf16)],
             bytes: 10 * Double(240 * 416 * 192)) { b, t in
            try b.upsampleNearest(t[0], scaleH: 2, scaleW: 2)
        }
    }
}
