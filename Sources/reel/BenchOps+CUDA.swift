import Foundation
import ReelCore
import ReelCUDA

/// `reel bench-ops --backend cuda`: each op at the shapes the Wan2.1 1.3B model runs
/// (480x832, 3 latent frames per block = 4680 tokens, a window of 18720 keys; REFERENCE.md
/// sections 1 and 5), timed with CUDA events (median), against a floor made of two measured
/// ceilings: the bf16 GEMM rate of an 8192^3 cuBLASLt product and the device-to-device copy rate.
enum CUDABench {
    struct Case {
        var name: String
        var shape: String
        var flops: Double
        var bytes: Double
        /// Makes the inputs; returns the op to time.
        var prepare: (CUDABackend) throws -> () throws -> Void
    }

    static func run(filter: String?, repeats: Int, device ordinal: Int = 0) throws {
        let gpu = try CUDABackend(device: ordinal)
        let info = gpu.cudaDevice.info
        print("bench-ops: \(gpu.name) \(info.name) (\(info.arch), \(info.multiprocessors) SMs), bf16 storage, fp32 accumulation")
        // The two ceilings, measured first.
        let gemmRef = cases().first { $0.name == "gemm" }!
        let refTime = try time(gemmRef, on: gpu, repeats: max(repeats, 10))
        let peakFlops = gemmRef.flops / refTime
        let copyCase = copy(bytes: 1 << 30)
        let copyTime = try time(copyCase, on: gpu, repeats: max(repeats, 10))
        let bandwidth = copyCase.bytes / copyTime
        print(String(format: "ceilings: bf16 GEMM 8192^3 %.0f TFLOP/s, device copy %.2f TB/s (read + write)", peakFlops / 1e12, bandwidth / 1e12))
        print("floor = max(FLOP / GEMM rate, bytes / copy rate); ratio = floor / time (1.0 = at the ceiling)\n")
        let header = pad("op", 18) + pad("shape", 46) + lpad("time ms", 10) + lpad("TFLOP/s", 9) + lpad("GB/s", 8)
            + lpad("floor ms", 10) + "  bound   " + lpad("ratio", 6)
        print(header)
        print(String(repeating: "-", count: header.count))
        let selected = cases().filter { filter == nil || "\($0.name) \($0.shape)".contains(filter!) }
        for c in selected {
            let t: Double
            do { t = try time(c, on: gpu, repeats: repeats) } catch {
                print(pad(c.name, 18) + pad(c.shape, 46) + "  FAILED: \(error)")
                continue
            }
            let fc = c.flops / peakFlops, fm = c.bytes / bandwidth
            let floor = max(fc, fm)
            print(pad(c.name, 18) + pad(c.shape, 46) + lpad(String(format: "%.3f", t * 1e3), 10)
                  + lpad(c.flops > 0 ? String(format: "%.1f", c.flops / t / 1e12) : "-", 9)
                  + lpad(String(format: "%.0f", c.bytes / t / 1e9), 8)
                  + lpad(String(format: "%.3f", floor * 1e3), 10) + "  " + pad(fc >= fm ? "compute" : "memory", 8)
                  + lpad(String(format: "%.2f", floor / t), 6))
        }
        for r in gpu.cudnnRefusals { print("cuDNN refused (own kernel used): \(r)") }
        let s = gpu.cudaDevice.allocatorStats
        print("\npeak device memory in tensors: \(s.peak >> 20) MiB; cuMemAlloc calls: \(s.driverAllocations)")
    }

    /// Median of `repeats` event-timed samples after two warm-ups (kernel compile, GEMM choice).
    /// Each sample times enough back-to-back runs to fill ~2 ms, so the host's launch cost overlaps
    /// the GPU's work instead of showing up as idle time between the events.
    static func time(_ c: Case, on gpu: CUDABackend, repeats: Int) throws -> Double {
        let op = try c.prepare(gpu)
        try op(); try op()
        try gpu.synchronize()
        func sample(_ inner: Int) throws -> Double {
            let start = try gpu.record(timing: true)
            for _ in 0..<inner { try op() }
            let end = try gpu.record(timing: true)
            return try gpu.elapsedMilliseconds(from: start, to: end) / 1e3 / Double(inner)
        }
        let inner = max(1, min(50, Int(2e-3 / max(try sample(1), 1e-7))))
        var times: [Double] = []
        for _ in 0..<repeats { times.append(try sample(inner)) }
        return times.sorted()[times.count / 2]
    }

    static func randn(_ b: CUDABackend, _ s: Shape, _ dt: DType = .bf16, seed: UInt64 = 1) throws -> Tensor {
        try b.randomNormal(s, seed: seed, offset: 0, dtype: dt)
    }

    static func copy(bytes: Int) -> Case {
        Case(name: "copy", shape: "\(bytes >> 20) MiB device to device", flops: 0, bytes: 2 * Double(bytes)) { b in
            let x = try randn(b, [bytes / 2])
            return { _ = try b.cast(x, to: .bf16) }
        }
    }

    static func cases() -> [Case] {
        var out: [Case] = []
        func add(_ name: String, _ shape: String, flops: Double, bytes: Double, _ prepare: @escaping (CUDABackend) throws -> () throws -> Void) {
            out.append(Case(name: name, shape: shape, flops: flops, bytes: bytes, prepare: prepare))
        }
        let tokens = 4680, dim = 1536, ffn = 8960, heads = 12, hd = 128, window = 18720
        // GEMMs: [M, K] x [N, K]^T (a Linear), bf16. 8192^3 is the rate reference.
        for (m, k, n, what) in [(8192, 8192, 8192, "rate reference"), (tokens, dim, dim, "q/k/v/o"), (tokens, dim, ffn, "ffn up"),
                                (tokens, ffn, dim, "ffn down"), (512, 4096, dim, "text embedding"), (512, dim, dim, "cross k/v")] {
            add("gemm", "\(m)x\(k) . [\(n),\(k)]^T (\(what))", flops: 2 * Double(m * n * k), bytes: 2 * Double(m * k + n * k + m * n)) { b in
                let x = try randn(b, [m, k]), w = try randn(b, [n, k], seed: 2)
                return { _ = try b.linear(x, weight: w) }
            }
        }
        add("gemm+bias", "\(tokens)x\(dim) . [\(ffn),\(dim)]^T + bias", flops: 2 * Double(tokens * dim * ffn), bytes: 2 * Double(tokens * dim + ffn * dim + tokens * ffn)) { b in
            let x = try randn(b, [tokens, dim]), w = try randn(b, [ffn, dim], seed: 2), bias = try randn(b, [ffn], seed: 3)
            return { _ = try b.linear(x, weight: w, bias: bias) }
        }
        // The FFN's first layer with its GELU: cuBLASLt's GELU_BIAS epilogue against the GEMM (bias
        // fused) then a geluTanh pass, which writes and reads the [4680, 8960] pre-activation again
        // (2 x 84 MB more). Both against the fused floor.
        for epilogue in [true, false] {
            add("linearGELU", "\(tokens)x\(dim) . [\(ffn),\(dim)]^T + bias " + (epilogue ? "(epilogue)" : "(gemm + geluTanh)"),
                flops: 2 * Double(tokens * dim * ffn), bytes: 2 * Double(tokens * dim + ffn * dim + tokens * ffn)) { b in
                let x = try randn(b, [tokens, dim]), w = try randn(b, [ffn, dim], seed: 2), bias = try randn(b, [ffn], seed: 3)
                return {
                    b.geluEpilogue = epilogue
                    defer { b.geluEpilogue = CUDABackend.geluEpilogueDefault }
                    _ = try b.linearGELU(x, weight: w, bias: bias)
                }
            }
        }
        // Attention; FLOPs counted as 4 * Lq * Lk * D * H (QK^T and PV). The DiT shapes run on both
        // paths: cuDNN's fused flash attention (auto) and Reel's own tensor-core kernel.
        for (lq, lk, h, d, what, path) in [(tokens, window, heads, hd, "DiT self", CUDABackend.AttentionPath.auto), (tokens, window, heads, hd, "DiT self", .own),
                                           (tokens, 512, heads, hd, "DiT cross", .auto), (tokens, 512, heads, hd, "DiT cross", .own),
                                           (6240, 6240, 1, 384, "VAE middle", .auto)] {
            add("attention", "q\(lq) k\(lk) \(h)x\(d) (\(what), \(path))", flops: 4 * Double(lq * lk * d * h), bytes: 2 * Double((2 * lq + 2 * lk) * h * d)) { b in
                let q = try randn(b, [1, lq, h, d]), k = try randn(b, [1, lk, h, d], seed: 2), v = try randn(b, [1, lk, h, d], seed: 3)
                return {
                    b.attentionPath = path
                    defer { b.attentionPath = .auto }
                    _ = try b.attention(query: q, key: k, value: v, scale: 1 / Float(d).squareRoot(), bias: nil)
                }
            }
        }
        let act = Double(tokens * dim) * 2
        add("layerNorm", "[\(tokens), \(dim)] no affine", flops: 0, bytes: 2 * act) { b in
            let x = try randn(b, [tokens, dim]); return { _ = try b.layerNorm(x, weight: nil, bias: nil, eps: 1e-6) }
        }
        add("rmsNorm", "[\(tokens), \(dim)] (q/k norm)", flops: 0, bytes: 2 * act) { b in
            let x = try randn(b, [tokens, dim]), w = try randn(b, [dim], seed: 2); return { _ = try b.rmsNorm(x, weight: w, eps: 1e-6) }
        }
        add("modulate", "[1, \(tokens), \(dim)] by [1, 1, \(dim)]", flops: 0, bytes: 2 * act) { b in
            let x = try randn(b, [1, tokens, dim]), s = try randn(b, [1, 1, dim], .f32, seed: 2), t = try randn(b, [1, 1, dim], .f32, seed: 3)
            return { _ = try b.modulate(x, scale: s, shift: t) }
        }
        add("rope3d", "[1, \(tokens), \(heads), \(hd)] 3x30x52", flops: 0, bytes: 2 * act) { b in
            let x = try randn(b, [1, tokens, heads, hd]); return { _ = try b.rope3d(x, grid: RoPEGrid(frames: 3, height: 30, width: 52, frameOffset: 9)) }
        }
        add("geluTanh", "[\(tokens), \(ffn)]", flops: 0, bytes: 4 * Double(tokens * ffn)) { b in
            let x = try randn(b, [tokens, ffn]); return { _ = try b.unary(.geluTanh, x) }
        }
        add("add", "[\(tokens), \(dim)] + [\(tokens), \(dim)]", flops: 0, bytes: 3 * act) { b in
            let x = try randn(b, [tokens, dim]), y = try randn(b, [tokens, dim], seed: 2); return { _ = try b.add(x, y) }
        }
        add("mul", "[\(tokens), \(dim)] * [1, \(dim)] (gate)", flops: 0, bytes: 2 * act) { b in
            let x = try randn(b, [tokens, dim]), y = try randn(b, [1, dim], seed: 2); return { _ = try b.mul(x, y) }
        }
        // The DiT block's fused ops (fused.cu) and the composed ops they replace, on the same inputs;
        // both against the fused op's floor (one read of each input, one write).
        let framed: Shape = [3, tokens / 3, dim], grid = RoPEGrid(frames: 3, height: 30, width: 52, frameOffset: 9)
        for fused in [true, false] {
            add("modulatedLayerNorm", "[3, 1560, 1536] by [3, 1, 1536] " + (fused ? "(fused)" : "(layerNorm + modulate)"), flops: 0, bytes: 2 * act) { b in
                let x = try randn(b, framed), s = try randn(b, [3, 1, dim], seed: 2), h = try randn(b, [3, 1, dim], seed: 3)
                if fused { return { _ = try b.modulatedLayerNorm(x, scale: s, shift: h, eps: 1e-6) } }
                return { _ = try b.modulate(try b.layerNorm(x, weight: nil, bias: nil, eps: 1e-6), scale: s, shift: h) }
            }
            add("gatedResidual", "[3, 1560, 1536] + y * [3, 1, 1536] " + (fused ? "(fused)" : "(mul + add)"), flops: 0, bytes: 3 * act) { b in
                let x = try randn(b, framed), y = try randn(b, framed, seed: 2), g = try randn(b, [3, 1, dim], seed: 3)
                if fused { return { _ = try b.gatedResidual(x, y, gate: g) } }
                return { _ = try b.add(x, try b.mul(y, g)) }
            }
            add("rmsNormRoPE", "[1, \(tokens), \(heads), \(hd)] 3x30x52 " + (fused ? "(fused)" : "(rmsNorm + rope3d)"), flops: 0, bytes: 2 * act) { b in
                let x = try randn(b, [1, tokens, heads, hd]), w = try randn(b, [dim], seed: 2)
                if fused { return { _ = try b.rmsNormRoPE(x, weight: w, eps: 1e-6, grid: grid) } }
                return {
                    let n = try b.rmsNorm(try x.reshaped([1, tokens, dim]), weight: w, eps: 1e-6)
                    _ = try b.rope3d(try n.reshaped([1, tokens, heads, hd]), grid: grid)
                }
            }
        }
        let latent = 3 * 16 * 60 * 104
        add("axpby", "[3, 16, 60, 104] f32 (re-noise)", flops: 0, bytes: 12 * Double(latent)) { b in
            let x = try randn(b, [3, 16, 60, 104], .f32), y = try randn(b, [3, 16, 60, 104], .f32, seed: 2); return { _ = try b.axpby(0.4, x, 0.6, y) }
        }
        add("randomNormal", "[3, 16, 60, 104] f32", flops: 0, bytes: 4 * Double(latent)) { b in
            return { _ = try b.randomNormal([3, 16, 60, 104], seed: 7, offset: 0, dtype: .f32) }
        }
        add("copy (KV write)", "[1, \(tokens), \(heads), \(hd)] into window", flops: 0, bytes: 2 * act) { b in
            let cache = try b.allocate([1, window, heads, hd], dtype: .bf16), k = try randn(b, [1, tokens, heads, hd])
            return { try b.copy(k, into: cache, axis: 1, at: 3 * 1560) }
        }
        add("permute", "[1, \(tokens), \(heads), \(hd)] -> [1, \(heads), \(tokens), \(hd)]", flops: 0, bytes: 2 * act) { b in
            let x = try randn(b, [1, tokens, heads, hd]); return { _ = try b.permute(x, [0, 2, 1, 3]) }
        }
        add("softmax", "[\(heads * 512), 512]", flops: 0, bytes: 4 * Double(heads * 512 * 512)) { b in
            let x = try randn(b, [heads * 512, 512]); return { _ = try b.softmax(x) }
        }
        // Wan VAE decoder convolutions (channel-last), one latent frame with its 2 cached frames.
        for (t, h, w, c) in [(3, 60, 104, 384), (3, 240, 416, 192), (3, 480, 832, 96)] {
            for path in [CUDABackend.KernelChoice.auto, .own] {
                let rows: Int = h * w
                let flops: Double = 2 * Double(rows * c * 27 * c)
                let elements: Int = t * h * w * c + rows * c + 27 * c * c
                let label = "[1,\(t),\(h),\(w),\(c)] * [\(c),3,3,3,\(c)] (\(path))"
                add("conv3d", label, flops: flops, bytes: 2 * Double(elements)) { b in
                    let x = try randn(b, [1, t, h, w, c]), wt = try randn(b, [c, 3, 3, 3, c], seed: 2), bias = try randn(b, [c], seed: 3)
                    return {
                        b.convolutionPath = path
                        defer { b.convolutionPath = .auto }
                        _ = try b.conv3d(x, weight: wt, bias: bias, stride: (1, 1, 1), padding: ConvPadding(h: (1, 1), w: (1, 1)))
                    }
                }
            }
        }
        // One output frame of a causal conv from 2 cached frames and a new one, with the residual
        // add, five ways: the frames joined by a copy then one k3 conv; the 3 frames already side by
        // side (a third cached frame per layer); the time taps as three k1 convs each adding the last;
        // a k2 conv over the cached pair then a k1 conv over the new frame (the decoder's path,
        // `CausalSlot.pair`); the 3 frames interleaved per pixel as one 2D conv over 3C channels.
        enum CausalVariant: String, CaseIterable {
            case joined = "joined", together = "3 frames already together", threeTaps = "taps 1 + 1 + 1"
            case pair = "pair + new (the decoder's)", channels = "taps as 3x channels"
        }
        for (h, w, c) in [(240, 416, 192), (480, 832, 96)] {
            let rows: Int = h * w
            let flops: Double = 2 * Double(rows * c * 27 * c)
            let frame = Double(rows * c)
            for variant in CausalVariant.allCases {
                let moved = variant == .joined ? 10 * frame : 8 * frame
                add("conv3d", "[1,2+1,\(h),\(w),\(c)] k3 + residual, \(variant.rawValue)", flops: flops, bytes: 2 * moved) { b in
                    let res = try randn(b, [1, 1, h, w, c], seed: 5), bias = try randn(b, [c], seed: 3)
                    let wt = try randn(b, [c, 3, 3, 3, c], seed: 2)
                    let pad = ConvPadding(h: (1, 1), w: (1, 1))
                    func conv(_ x: Tensor, _ weight: Tensor, bias: Tensor?, adding r: Tensor) throws -> Tensor {
                        try b.conv3d(x, weight: weight, bias: bias, stride: (1, 1, 1), padding: pad, adding: r)
                    }
                    switch variant {
                    case .joined, .pair, .threeTaps:
                        let cache = try randn(b, [1, 2, h, w, c]), x = try randn(b, [1, 1, h, w, c], seed: 4)
                        if variant == .joined { return { _ = try conv(try b.concat([cache, x], axis: 1), wt, bias: bias, adding: res) } }
                        if variant == .pair {
                            let w2 = try b.slice(wt, axis: 1, start: 0, length: 2), w1 = try b.slice(wt, axis: 1, start: 2, length: 1)
                            return { _ = try conv(x, w1, bias: nil, adding: try conv(cache, w2, bias: bias, adding: res)) }
                        }
                        let frames = [try b.slice(cache, axis: 1, start: 0, length: 1), try b.slice(cache, axis: 1, start: 1, length: 1), x]
                        let taps = try (0..<3).map { try b.slice(wt, axis: 1, start: $0, length: 1) }
                        return {
                            var acc = res
                            for k in 0..<3 { acc = try conv(frames[k], taps[k], bias: k == 0 ? bias : nil, adding: acc) }
                        }
                    case .together:
                        let together = try randn(b, [1, 3, h, w, c], seed: 8)
                        return { _ = try conv(together, wt, bias: bias, adding: res) }
                    case .channels:
                        let interleaved = try randn(b, [1, 1, h, w, 3 * c], seed: 6), wide = try randn(b, [c, 1, 3, 3, 3 * c], seed: 7)
                        return { _ = try conv(interleaved, wide, bias: bias, adding: res) }
                    }
                }
            }
        }
        add("l2Norm", "[\(480 * 832), 96] (VAE RMS_norm)", flops: 0, bytes: 4 * Double(480 * 832 * 96)) { b in
            let x = try randn(b, [480 * 832, 96]), g = try randn(b, [96], seed: 2); return { _ = try b.l2Norm(x, weight: g, scale: Float(96).squareRoot(), eps: 1e-12) }
        }
        // The decoder's norm + SiLU at its two full-frame widths (one frame each).
        for (rows, c) in [(480 * 832, 96), (240 * 416, 192)] {
            add("l2NormSiLU", "[\(rows), \(c)] (VAE norm + SiLU)", flops: 0, bytes: 4 * Double(rows * c)) { b in
                let x = try randn(b, [rows, c]), g = try randn(b, [c], seed: 2)
                return { _ = try b.l2NormSiLU(x, weight: g, scale: Float(c).squareRoot(), eps: 1e-12) }
            }
        }
        add("upsampleNearest", "[1, 240, 416, 192] x2", flops: 0, bytes: 10 * Double(240 * 416 * 192)) { b in
            let x = try randn(b, [1, 240, 416, 192]); return { _ = try b.upsampleNearest(x, scaleH: 2, scaleW: 2) }
        }
        return out
    }
}

fileprivate func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
fileprivate func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }
