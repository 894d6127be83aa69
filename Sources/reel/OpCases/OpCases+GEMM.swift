import ReelCore
import ReelCPU

/// Matrix products: matmul, linear (+ residual, into a view), linearGELU; the CPU's SGEMM paths.
extension OpCaseList {
    mutating func gemm(_ dt: DType) {
        check("matmul", "[37, 64] x [48, 64]^T + bias", dt,
              [InputSpec(shape: [37, 64], dtype: dt), InputSpec(shape: [48, 64], dtype: dt), InputSpec(shape: [48], dtype: dt)]) { b, t in
            try b.matmul(t[0], t[1], transposeB: true, bias: t[2])
        }
        check("matmul", "[2, 33, 40] x [40, 24]", dt,
              [InputSpec(shape: [2, 33, 40], dtype: dt), InputSpec(shape: [40, 24], dtype: dt)]) { b, t in
            try b.matmul(t[0], t[1], transposeB: false, bias: nil)
        }
        check("matmul", "batched [3, 17, 32] x [3, 32, 20]", dt,
              [InputSpec(shape: [3, 17, 32], dtype: dt), InputSpec(shape: [3, 32, 20], dtype: dt)]) { b, t in
            try b.matmul(t[0], t[1], transposeB: false, bias: nil)
        }
        check("matmul", "batched [2, 19, 64] x [2, 24, 64]^T", dt,
              [InputSpec(shape: [2, 19, 64], dtype: dt), InputSpec(shape: [2, 24, 64], dtype: dt)]) { b, t in
            try b.matmul(t[0], t[1], transposeB: true, bias: nil)
        }
        check("matmul", "[256, 1536] x [1536, 1536]^T + bias", dt,
              [InputSpec(shape: [256, 1536], dtype: dt), InputSpec(shape: [1536, 1536], dtype: dt),
               InputSpec(shape: [1536], dtype: dt)]) { b, t in
            try b.matmul(t[0], t[1], transposeB: true, bias: t[2])
        }
        // linearGELU, the DiT FFN's first layer (on CUDA one GEMM with cuBLASLt's GELU epilogue).
        // Weights of 1 / sqrt(K) give pre-activations of unit scale, where tanh and erf GELU differ
        // by ~4e-8 nmse: f32's 1e-9 tells them apart (bf16's output rounding cannot). 16-bit: the
        // CPU's composition rounds the pre-activation once more than the epilogue (factor 2).
        for (vars, x, n, withBias) in [("[37, 64] x [48, 64]^T + bias", [37, 64], 48, true),
                                       ("[37, 64] x [48, 64]^T", [37, 64], 48, false),
                                       ("[2, 19, 75] x [41, 75]^T + bias (odd)", [2, 19, 75], 41, true),
                                       ("[19, 75] x [41, 75]^T (odd)", [19, 75], 41, false),
                                       ("[256, 1536] x [1024, 1536]^T", [256, 1536], 1024, false),
                                       ("DiT [4680, 1536] x [8960, 1536]^T + bias", [4680, 1536], 8960, true)]
                as [(String, Shape, Int, Bool)] {
            if vars.hasPrefix("DiT") && dt == .f16 { continue }  // the DiT runs bf16 (and f32 for parity)
            let k = x.last
            var inputs = [InputSpec(shape: x, dtype: dt), InputSpec(shape: [n, k], dtype: dt, kind: .scaled(1 / Float(k).squareRoot()))]
            if withBias { inputs.append(InputSpec(shape: [n], dtype: dt)) }
            check("linearGELU", vars, dt, inputs, factor: dt == .f32 ? 1 : 2) { b, t in
                try b.linearGELU(t[0], weight: t[1], bias: withBias ? t[2] : nil)
            }
        }
        // linear + residual in one GEMM (cuBLASLt's beta = 1), and a linear written into a view.
        for (vars, x, n) in [("[37, 64] x [48, 64]^T + bias + residual", [37, 64], 48),
                             ("DiT [1, 4680, 1536] x [1536, 1536]^T + bias + residual", [1, 4680, 1536], 1536)] as [(String, Shape, Int)] {
            let k = x.last
            var out = Array(x.dims.dropLast()); out.append(n)
            let weight = InputSpec(shape: [n, k], dtype: dt, kind: .scaled(1 / Float(k).squareRoot()))
            check("linear", vars, dt, [InputSpec(shape: x, dtype: dt), weight, InputSpec(shape: [n], dtype: dt),
                                       InputSpec(shape: Shape(out), dtype: dt)], factor: 2) { b, t in
                try b.linear(t[0], weight: t[1], bias: t[2], adding: t[3])
            }
        }
        check("linear", "[37, 64] x [48, 64]^T + bias into a view at row 5", dt,
              [InputSpec(shape: [37, 64], dtype: dt), InputSpec(shape: [48, 64], dtype: dt, kind: .scaled(0.125)),
               InputSpec(shape: [48], dtype: dt)]) { b, t in
            let big = try b.zeros([50, 48], dtype: dt)
            try b.linear(t[0], weight: t[1], bias: t[2], into: try big.narrowed(axis: 0, start: 5, length: 37))
            return try b.slice(big, axis: 0, start: 5, length: 37)
        }
    }

    mutating func gemmPerf() {
        // CPU only: the own SGEMM and the BLAS at the 1024^3 reference size, side by side, each on a CPU
        // backend of the command's threads with that GEMM path.
        let n = 1024, size = Double(n)
        for path in [GEMMPath.own, .blas] where path == .own || blas {
            perf(.cpu, "sgemm.\(path.rawValue)", "\(n)x\(n)x\(n)", .f32,
                 [InputSpec(shape: [n, n], dtype: .f32), InputSpec(shape: [n, n], dtype: .f32)],
                 flops: 2 * size * size * size, bytes: 3 * size * size * 4,
                 on: { b in CPUBackend(threads: (b as? CPUBackend)?.threads, gemm: path) },
                 build: { b, t in { try b.matmul(t[0], t[1], transposeB: false, bias: nil) } })
        }
        // CPU: Linear [M, K] x [N, K]^T at a DiT frame's tokens, f32 and bf16 weights.
        for (m, k, n, wdt) in [(1560, 1536, 1536, DType.f32), (1560, 1536, 8960, .f32), (1560, 1536, 1536, .bf16)] {
            perf(.cpu, "matmul", "\(m)x\(k) . [\(n),\(k)]^T \(wdt)", .f32,
                 [InputSpec(shape: [m, k], dtype: .f32), InputSpec(shape: [n, k], dtype: wdt)],
                 flops: 2.0 * Double(m * k * n), bytes: Double(m * k + m * n) * 4 + Double(n * k * wdt.size)) { b, t in
                try b.linear(t[0], weight: t[1])
            }
        }

        // CUDA, bf16: [M, K] x [N, K]^T (a Linear). 8192^3 is the rate reference (BenchOps+CUDA.swift
        // takes the first "gemm" case as the compute ceiling).
        let (tokens, dim, ffn) = (4680, 1536, 8960)
        for (m, k, n, what) in [(8192, 8192, 8192, "rate reference"), (tokens, dim, dim, "q/k/v/o"), (tokens, dim, ffn, "ffn up"),
                                (tokens, ffn, dim, "ffn down"), (512, 4096, dim, "text embedding"), (512, dim, dim, "cross k/v")] {
            perf(.cuda, "gemm", "\(m)x\(k) . [\(n),\(k)]^T (\(what))", .bf16,
                 [InputSpec(shape: [m, k], dtype: .bf16), InputSpec(shape: [n, k], dtype: .bf16)],
                 flops: 2 * Double(m * n * k), bytes: 2 * Double(m * k + n * k + m * n)) { b, t in
                try b.linear(t[0], weight: t[1])
            }
        }
        let ffnUp = [InputSpec(shape: [tokens, dim], dtype: .bf16), InputSpec(shape: [ffn, dim], dtype: .bf16),
                     InputSpec(shape: [ffn], dtype: .bf16)]
        let ffnFlops = 2 * Double(tokens * dim * ffn), ffnBytes = 2 * Double(tokens * dim + ffn * dim + tokens * ffn)
        perf(.cuda, "gemm+bias", "\(tokens)x\(dim) . [\(ffn),\(dim)]^T + bias", .bf16, ffnUp, flops: ffnFlops, bytes: ffnBytes) { b, t in
            try b.linear(t[0], weight: t[1], bias: t[2])
        }
        // The FFN's first layer with its GELU: cuBLASLt's GELU_BIAS epilogue against the GEMM (bias
        // fused) then a geluTanh pass, which writes and reads the [4680, 8960] pre-activation again
        // (2 x 84 MB more). Both against the fused floor.
        for epilogue in [true, false] {
            perf(.cuda, "linearGELU", "\(tokens)x\(dim) . [\(ffn),\(dim)]^T + bias " + (epilogue ? "(epilogue)" : "(gemm + geluTanh)"),
                 .bf16, ffnUp, flops: ffnFlops, bytes: ffnBytes) { b, t in
                try withGELUEpilogue(b, epilogue) { try b.linearGELU(t[0], weight: t[1], bias: t[2]) }
            }
        }
    }
}
