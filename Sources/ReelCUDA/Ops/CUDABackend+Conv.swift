import Foundation
import ReelCore

// 3D convolution as im2col (Kernels/conv.cu) + one cuBLASLt GEMM per chunk of output rows, so the
// arithmetic runs on tensor cores with the bias in the GEMM epilogue.
extension CUDABackend {
    /// Column buffer budget: bounds memory for the VAE's 480x832 frames (rows x K x 2 bytes).
    static let im2colBudgetBytes = 256 << 20

    /// The kernel's ConvGeom struct.
    struct ConvGeom: BitwiseCopyable {
        var t, h, w, c: Int64
        var to, ho, wo: Int64
        var kt, kh, kw: Int32
        var st, sh, sw: Int32
        var pt, ph, pw: Int32
        var pad: Int32 = 0
    }

    public func conv3d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int, Int), padding: ConvPadding) throws -> Tensor {
        try convolve(x, weight: weight, bias: bias, stride: stride, padding: padding, residual: nil)
    }

    public func conv3d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int, Int), padding: ConvPadding,
                       adding residual: Tensor) throws -> Tensor {
        try convolve(x, weight: weight, bias: bias, stride: stride, padding: padding, residual: residual)
    }

    /// conv3d (+ residual): cuDNN with the bias and the residual in its epilogue, else im2col + GEMM
    /// and a separate add.
    private func convolve(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int, Int), padding: ConvPadding,
                          residual: Tensor?) throws -> Tensor {
        try requireFloat(x, "conv3d"); try requireFloat(weight, "conv3d")
        try require(x.rank == 5 && weight.rank == 5, "conv3d", "expected x [N,T,H,W,Cin] and weight [Cout,kt,kh,kw,Cin], got \(x.shape) and \(weight.shape)")
        let (n, t, h, w, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        let (cout, kt, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
        try require(weight.shape[4] == cin, "conv3d", "weight has \(weight.shape[4]) input channels, x has \(cin)")
        try require(stride.0 >= 1 && stride.1 >= 1 && stride.2 >= 1, "conv3d", "strides must be >= 1, got \(stride)")
        let pads = [padding.t.0, padding.t.1, padding.h.0, padding.h.1, padding.w.0, padding.w.1]
        try require(pads.allSatisfy { $0 >= 0 }, "conv3d", "negative padding \(pads)")
        let to = (t + padding.t.0 + padding.t.1 - kt) / stride.0 + 1
        let ho = (h + padding.h.0 + padding.h.1 - kh) / stride.1 + 1
        let wo = (w + padding.w.0 + padding.w.1 - kw) / stride.2 + 1
        try require(to > 0 && ho > 0 && wo > 0, "conv3d", "kernel \(kt)x\(kh)x\(kw) is larger than the padded input \(x.shape)")
        if let bias { try require(bias.count == cout, "conv3d", "bias has \(bias.count) elements for \(cout) output channels") }
        if let residual {
            try require(residual.shape == [n, to, ho, wo, cout], "conv3d", "residual \(residual.shape) differs from the output \([n, to, ho, wo, cout])")
        }
        let wt = weight.dtype == x.dtype ? weight : try cast(weight, to: x.dtype)
        let bt = try bias.map { $0.dtype == x.dtype ? $0 : try cast($0, to: x.dtype) }
        let out = try allocate([n, to, ho, wo, cout], dtype: x.dtype)
        let rows = n * to * ho * wo
        let kdim = kt * kh * kw * cin
        let pw = try arg(wt, "conv3d"), po = try arg(out, "conv3d"), pb = try bt.map { try arg($0, "conv3d") }
        let esize = x.dtype.size

        let half = x.dtype == .bf16 || x.dtype == .f16
        if convolutionPath == .cudnn && !half {
            throw ReelError.unsupported(backend: name, op: "conv3d", message: "the cuDNN path takes bf16/f16 tensors, got \(x.dtype)")
        }
        // (Filters in another dtype are cast per call: padded copies of them could not be kept.)
        if half && convolutionPath != .own && cout < CUDABackend.narrowConvOutputChannels && wt === weight && bt === bias {
            if let y = try narrowCuDNNConvolution(x, weight: wt, bias: bt, stride: stride, padding: padding, residual: residual) { return y }
        } else if half && convolutionPath != .own {
            let key = CuDNNConvPlan.Key(x: [n, t, h, w, cin], w: [cout, kt, kh, kw], stride: [stride.0, stride.1, stride.2],
                                        pre: [padding.t.0, padding.h.0, padding.w.0], post: [padding.t.1, padding.h.1, padding.w.1],
                                        bias: bt != nil, dtype: x.dtype, residual: residual != nil)
            let rt = try residual.map { $0.dtype == x.dtype ? $0 : try cast($0, to: x.dtype) }
            do {
                if try cudnnConv(key: key, out: [to, ho, wo], x: try arg(x, "conv3d"), w: pw, y: po, bias: pb,
                                 residual: try rt.map { try arg($0, "conv3d") }) { return out }
            } catch {
                if convolutionPath == .cudnn { throw error }
            }
        }
        if kt == 1 && kh == 1 && kw == 1 && stride == (1, 1, 1) && pads.allSatisfy({ $0 == 0 }) {
            // A pointwise convolution is already a GEMM over the channel-last rows.
            try gemm(a: try arg(x, "conv3d"), b: pw, d: po, bias: pb, m: rows, n: cout, k: cin, transposeB: true, dtype: x.dtype)
            return try residual.map { try binary(.add, out, $0) } ?? out
        }
        let chunk = max(1, min(rows, CUDABackend.im2colBudgetBytes / max(kdim * esize, 1)))
        let col = try allocate([chunk, kdim], dtype: x.dtype)
        let px = try arg(x, "conv3d"), pc = try arg(col, "conv3d")
        let geom = ConvGeom(t: Int64(t), h: Int64(h), w: Int64(w), c: Int64(cin), to: Int64(to), ho: Int64(ho), wo: Int64(wo),
                            kt: Int32(kt), kh: Int32(kh), kw: Int32(kw), st: Int32(stride.0), sh: Int32(stride.1), sw: Int32(stride.2),
                            pt: Int32(padding.t.0), ph: Int32(padding.h.0), pw: Int32(padding.w.0))
        var start = 0
        while start < rows {
            let count = min(chunk, rows - start)
            let vector = (cin * esize) % 16 == 0 && px % 16 == 0
            try launch1D("conv", vector ? "im2col3d_v16" : "im2col3d", n: vector ? count * kdim * esize / 16 : count * kdim) { k in
                k.add(px); k.add(pc); k.add(geom); k.add(Int64(start)); k.add(Int64(count)); k.add(Int32(esize))
            }
            // [count, K] x weight[Cout, K]^T -> out rows start ..< start + count
            try gemm(a: pc, b: pw, d: po + UInt64(start * cout * esize), bias: pb, m: count, n: cout, k: kdim, transposeB: true, dtype: x.dtype)
            start += count
        }
        return try residual.map { try binary(.add, out, $0) } ?? out
    }
}

extension CUDABackend {
    /// Convolutions with fewer output channels than this run on cuDNN with the filters padded by zeros to
    /// this many: cuDNN's engines for 3 outputs are about twice as slow as for 16 (the Wan VAE's head conv at
    /// 480x832, docs/perf-notes.md). The padded output's first channels are the result.
    static let narrowConvOutputChannels = 16

    /// A narrow convolution on cuDNN with zero-padded filters (kept per weight, `NarrowFilterCache`), then
    /// the real channels sliced out and the residual added; nil when cuDNN refuses it (the caller falls back).
    private func narrowCuDNNConvolution(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int, Int), padding: ConvPadding,
                                        residual: Tensor?) throws -> Tensor? {
        let cout = weight.shape[0], wide = CUDABackend.narrowConvOutputChannels
        let pw = try cudaDevice.narrowFilters.padded(weight, to: wide)
        let pb = try bias.map { try cudaDevice.narrowFilters.padded($0, to: wide) }
        let (n, t, h, w, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        let (kt, kh, kw) = (weight.shape[1], weight.shape[2], weight.shape[3])
        let to = (t + padding.t.0 + padding.t.1 - kt) / stride.0 + 1
        let ho = (h + padding.h.0 + padding.h.1 - kh) / stride.1 + 1
        let wo = (w + padding.w.0 + padding.w.1 - kw) / stride.2 + 1
        let out = try allocate([n, to, ho, wo, wide], dtype: x.dtype)
        let key = CuDNNConvPlan.Key(x: [n, t, h, w, cin], w: [wide, kt, kh, kw], stride: [stride.0, stride.1, stride.2],
                                    pre: [padding.t.0, padding.h.0, padding.w.0], post: [padding.t.1, padding.h.1, padding.w.1],
                                    bias: pb != nil, dtype: x.dtype, residual: false)
        do {
            guard try cudnnConv(key: key, out: [to, ho, wo], x: try arg(x, "conv3d"), w: try arg(pw, "conv3d"), y: try arg(out, "conv3d"),
                                bias: try pb.map { try arg($0, "conv3d") }) else { return nil }
        } catch {
            if convolutionPath == .cudnn { throw error }
            return nil
        }
        let y = try slice(out, axis: 4, start: 0, length: cout)
        return try residual.map { try binary(.add, y, $0.dtype == y.dtype ? $0 : try cast($0, to: y.dtype)) } ?? y
    }

    /// Runs cuDNN's convolution; false when cuDNN is absent or refused this shape before.
    func cudnnConv(key: CuDNNConvPlan.Key, out: [Int], x: UInt64, w: UInt64, y: UInt64, bias: UInt64?, residual: UInt64? = nil) throws -> Bool {
        plans.cudnnLock.lock()
        defer { plans.cudnnLock.unlock() }
        if plans.cudnnConvRefused.contains(key) {
            if convolutionPath == .cudnn { throw ReelError.unsupported(backend: name, op: "conv3d", message: cudnnRefusals.last ?? "refused by cuDNN") }
            return false
        }
        let dnn: CuDNN
        do { dnn = try cudnnContext() } catch {
            if convolutionPath == .cudnn { throw error }
            return false
        }
        let plan: CuDNNConvPlan
        if let p = plans.cudnnConvPlans[key] { plan = p } else {
            // Each candidate engine runs on the real buffers (the output is written again below):
            // once to load it, then timed over 3 runs.
            let time: (CuDNNConvPlan, CUhandle, Int) throws -> Double = { [self] p, candidate, bytes in
                let scratch = try cudnnScratch(bytes)
                try p.execute(handle: plans.cudnnHandle, x: x, w: w, y: y, bias: bias, residual: residual, workspace: scratch, plan: candidate)
                let start = try record(timing: true)
                for _ in 0..<3 {
                    try p.execute(handle: plans.cudnnHandle, x: x, w: w, y: y, bias: bias, residual: residual, workspace: scratch, plan: candidate)
                }
                return try elapsedMilliseconds(from: start, to: try record(timing: true)) / 3
            }
            do {
                plan = try CuDNNConvPlan(dnn: dnn, handle: plans.cudnnHandle, key: key, out: out,
                                         candidates: tuning.cudnnConvolutionCandidates, time: time)
            } catch {
                plans.cudnnConvRefused.insert(key)
                plans.cudnnRefusals.append("conv3d x\(key.x) w\(key.w) stride \(key.stride) pad \(key.pre)/\(key.post) \(key.dtype): \(error)")
                throw error
            }
            plans.cudnnConvPlans[key] = plan
        }
        try cudaDevice.makeCurrent()
        try plan.execute(handle: plans.cudnnHandle, x: x, w: w, y: y, bias: bias, residual: residual, workspace: try cudnnScratch(plan.workspaceBytes),
                         on: self, label: key.profileLabel)
        return true
    }
}
