import Foundation
import ReelCore

extension CPUBackend {
    /// 3D convolution as a GEMM: each output position's receptive field (kt x kh x kw runs of Cin
    /// contiguous channels, zeros where it falls into the padding) is one row of a
    /// [positions, kt*kh*kw*Cin] matrix, multiplied by the weight `[Cout, kt*kh*kw*Cin]`^T.
    /// The own kernel packs those rows straight from x (implicit GEMM); the BLAS path (`gemm: .blas`)
    /// materializes them in chunks of ~16 MB (im2col). A 1x1x1 convolution is a plain matmul.
    public func conv3d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int, Int), padding: ConvPadding) throws -> Tensor {
        let op = "conv3d"
        try requireFloat(x, op); try requireFloat(weight, op)
        try require(x.rank == 5, op, "x must be [N, T, H, W, Cin], got \(x.shape)")
        try require(weight.rank == 5, op, "weight must be [Cout, kt, kh, kw, Cin], got \(weight.shape)")
        let (nb, t, h, w, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        let (cout, kt, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
        try require(weight.shape[4] == cin, op, "weight \(weight.shape) expects \(weight.shape[4]) input channels, x \(x.shape) has \(cin)")
        try require(stride.0 > 0 && stride.1 > 0 && stride.2 > 0, op, "stride must be positive, got \(stride)")
        let pads = [padding.t.0, padding.t.1, padding.h.0, padding.h.1, padding.w.0, padding.w.1]
        try require(pads.allSatisfy { $0 >= 0 }, op, "negative padding \(padding)")
        let tp = t + padding.t.0 + padding.t.1, hp = h + padding.h.0 + padding.h.1, wp = w + padding.w.0 + padding.w.1
        try require(tp >= kt && hp >= kh && wp >= kw, op,
                    "kernel \(kt)x\(kh)x\(kw) is larger than the padded input \(tp)x\(hp)x\(wp)")
        let to = (tp - kt) / stride.0 + 1, ho = (hp - kh) / stride.1 + 1, wo = (wp - kw) / stride.2 + 1
        if let bias {
            try requireFloat(bias, op)
            try require(bias.count == cout, op, "bias \(bias.shape) does not match Cout = \(cout)")
        }
        let xin = try floats(x, op), win = try floats(weight, op)
        let biasIn = try bias.map { try floats($0, op) }
        let kDim = kt * kh * kw * cin
        let positions = nb * to * ho * wo
        return try makeOutput([nb, to, ho, wo, cout], x.dtype) { out in
            if let biasIn {
                let bp = biasIn.pointer
                parallelFor(positions, grain: 64) { r in
                    for i in r { (out + i * cout).update(from: bp, count: cout) }
                }
            }
            let beta: Float = biasIn == nil ? 0 : 1
            let pointwise = kt == 1 && kh == 1 && kw == 1 && stride == (1, 1, 1) && pads.allSatisfy { $0 == 0 }
            if pointwise {
                try sgemm(transB: true, m: positions, n: cout, k: cin, alpha: 1, a: xin.pointer, lda: cin,
                          b: win.pointer, ldb: cin, beta: beta, c: out, ldc: cout)
                return
            }
            let geometry = ConvGeometry(t: t, h: h, w: w, cin: cin, kt: kt, kh: kh, kw: kw, to: to, ho: ho, wo: wo,
                                        stride: stride, padding: padding)
            let src = UnsafePointer(xin.pointer)
            if gemmPath != .blas {
                // Implicit GEMM: the own kernel packs receptive fields straight from x, with no
                // im2col buffer. It is the default even where a BLAS is installed: measured faster than
                // im2col + OpenBLAS (docs/perf-notes.md, "CPU"; `reel bench-ops --filter conv`).
                SGEMM.run(transB: true, m: positions, n: cout, k: kDim, alpha: 1, packA: { i0, rows, p0, depth, dst in
                    geometry.packA(src, i0, rows, p0, depth, dst)
                }, b: win.pointer, ldb: kDim, beta: beta, c: out, ldc: cout, backend: self)
                return
            }
            // BLAS: im2col in chunks of positions (~16 MB), each a cblas_sgemm.
            let chunk = Swift.max(64, (4 << 20) / Swift.max(kDim, 1))
            let scratch = try CPUStorage(byteCount: Swift.min(chunk, positions) * kDim * 4)
            let cols = scratch.floats
            var p0 = 0
            while p0 < positions {
                let rows = Swift.min(chunk, positions - p0)
                parallelFor(rows, grain: 8) { r in
                    for i in r { geometry.gather(src, position: p0 + i, into: cols + i * kDim) }
                }
                try sgemm(transB: true, m: rows, n: cout, k: kDim, alpha: 1, a: cols, lda: kDim,
                          b: win.pointer, ldb: kDim, beta: beta, c: out + p0 * cout, ldc: cout)
                p0 += rows
            }
        }
    }

    public func upsampleNearest(_ x: Tensor, scaleH: Int, scaleW: Int) throws -> Tensor {
        let op = "upsampleNearest"
        let src = try host(x, op)
        try require(x.rank >= 3, op, "expected [..., H, W, C], got \(x.shape)")
        try require(scaleH >= 1 && scaleW >= 1, op, "scales must be at least 1, got \(scaleH)x\(scaleW)")
        let h = x.shape[-3], w = x.shape[-2], c = x.shape[-1]
        var dims = x.shape.dims
        dims[dims.count - 3] = h * scaleH
        dims[dims.count - 2] = w * scaleW
        let out = try allocate(Shape(dims), dtype: x.dtype)
        let dst = out.hostPointer!
        let es = x.dtype.size, pixel = c * es
        let outer = h == 0 || w == 0 ? 0 : x.count / (h * w * Swift.max(c, 1))
        let outRowBytes = w * scaleW * pixel
        guard pixel > 0 else { return out }
        parallelFor(outer * h, grain: 4) { r in
            for row in r {
                // Row `row` of the input becomes scaleH identical output rows.
                let s = src + row * w * pixel
                let d0 = dst + row * scaleH * outRowBytes
                for xx in 0..<w {
                    for k in 0..<scaleW { (d0 + (xx * scaleW + k) * pixel).copyMemory(from: s + xx * pixel, byteCount: pixel) }
                }
                for k in 1..<Swift.max(scaleH, 1) { (d0 + k * outRowBytes).copyMemory(from: d0, byteCount: outRowBytes) }
            }
        }
        return out
    }
}

/// Index arithmetic of a channel-last 3D convolution seen as a GEMM: row = output position
/// (n, t, y, x), depth = (dt, dy, dx, ci) with ci fastest, matching the weight `[Cout, kt, kh, kw, Cin]`.
struct ConvGeometry {
    let t: Int, h: Int, w: Int, cin: Int
    let kt: Int, kh: Int, kw: Int
    let to: Int, ho: Int, wo: Int
    let stride: (Int, Int, Int)
    let padding: ConvPadding

    /// Input offset (in elements) of tap `tap` for output position `position`, or nil in the padding.
    @inline(__always)
    func source(position: Int, tap: Int) -> Int? {
        var p = position
        let ox = p % wo; p /= wo
        let oy = p % ho; p /= ho
        let ot = p % to
        let n = p / to
        let dx = tap % kw, dy = (tap / kw) % kh, dt = tap / (kw * kh)
        let it = ot * stride.0 + dt - padding.t.0
        let iy = oy * stride.1 + dy - padding.h.0
        let ix = ox * stride.2 + dx - padding.w.0
        if it < 0 || it >= t || iy < 0 || iy >= h || ix < 0 || ix >= w { return nil }
        return (((n * t + it) * h + iy) * w + ix) * cin
    }

    /// The whole receptive field of one output position, contiguous (a row of im2col).
    func gather(_ x: UnsafePointer<Float>, position: Int, into dst: UnsafeMutablePointer<Float>) {
        for tap in 0..<(kt * kh * kw) {
            if let s = source(position: position, tap: tap) {
                (dst + tap * cin).update(from: x + s, count: cin)
            } else {
                (dst + tap * cin).update(repeating: 0, count: cin)
            }
        }
    }

    /// SGEMM's A packing (`dst[strip][k][r]`) read straight from x.
    func packA(_ x: UnsafePointer<Float>, _ i0: Int, _ rows: Int, _ p0: Int, _ depth: Int, _ dst: UnsafeMutablePointer<Float>) {
        let mr = SGEMM.mr
        var i = 0
        while i < rows {
            let strip = dst + i * depth
            for r in 0..<mr {
                let out = strip + r
                guard i + r < rows else {
                    for k in 0..<depth { out[k * mr] = 0 }
                    continue
                }
                var p = p0
                while p < p0 + depth {
                    let tap = p / cin, ci = p % cin
                    let len = Swift.min(cin - ci, p0 + depth - p)
                    let o = out + (p - p0) * mr
                    if let s = source(position: i0 + i + r, tap: tap) {
                        let src = x + s + ci
                        for q in 0..<len { o[q * mr] = src[q] }
                    } else {
                        for q in 0..<len { o[q * mr] = 0 }
                    }
                    p += len
                }
            }
            i += mr
        }
    }
}
