import Foundation
import ReelCore

/// cuDNN's implicit-GEMM 3D convolution for one shape, channel-last, through the backend API:
///
///     Y = conv(X, W)            [N, Cout, T', H', W'] dims over Reel's [N, T', H', W', Cout] memory
///     Y = Y + bias              pointwise, fused into the convolution's epilogue when given
///
/// No im2col buffer: the VAE's 480x832 convolutions read their input once.
final class CuDNNConvPlan: CuDNNPlan, @unchecked Sendable {
    struct Key: Hashable {
        var x: [Int]            // N, T, H, W, Cin
        var w: [Int]            // Cout, kt, kh, kw
        var stride: [Int]
        var pre: [Int], post: [Int]
        var bias: Bool
        var dtype: DType
        /// A tensor of the output's shape added in the epilogue.
        var residual = false

        /// The profiler's label: `cudnn conv N x T x H x W x Cin k kt x kh x kw -> Cout` (and the stride if not 1).
        var profileLabel: String {
            "cudnn conv \(x.map(String.init).joined(separator: "x")) k\(w[1])x\(w[2])x\(w[3]) -> \(w[0])"
                + (stride == [1, 1, 1] ? "" : " stride \(stride.map(String.init).joined(separator: "x"))")
                + (residual ? " +residual" : "")
        }
    }

    static let uidX: Int64 = 1, uidW: Int64 = 2, uidY: Int64 = 3, uidBias: Int64 = 4, uidResidual: Int64 = 5
    static let uidConv: Int64 = 10, uidBiased: Int64 = 11

    /// Convolutions of at least `timedFLOPs` time their first `candidates` engine configs
    /// (`Tuning.cudnnConvolutionCandidates`); smaller ones take the heuristics' first choice.
    static let timedFLOPs = 2e9

    /// - Parameter time: runs the convolution with a candidate plan and returns milliseconds
    ///   (see `choosePlan`); nil keeps the heuristics' first plan.
    init(dnn: CuDNN, handle: CUhandle, key: Key, out: [Int], candidates: Int = Tuning.standard.cudnnConvolutionCandidates,
         time: ((CuDNNConvPlan, CUhandle, Int) throws -> Double)? = nil) throws {
        super.init(dnn: dnn)
        do {
            let flops = 2.0 * Double(key.w.reduce(1, *) * key.x[4]) * Double(key.x[0] * out.reduce(1, *))
            let timer: ((CUhandle, Int) throws -> Double)? = flops < Self.timedFLOPs ? nil : time.map { t in
                { [unowned self] plan, bytes in try t(self, plan, bytes) }
            }
            try choosePlan(handle: handle, ops: try buildOps(key, out: out), candidates: candidates, time: timer)
        } catch {
            destroyDescriptors()
            throw ReelError.unsupported(backend: "cuda", op: "conv3d", message: "cuDNN: \(error)")
        }
    }

    private func buildOps(_ key: Key, out: [Int]) throws -> [CUhandle] {
        let io: Int32 = key.dtype == .bf16 ? CuDNN.dataBFloat16 : key.dtype == .f16 ? CuDNN.dataHalf : CuDNN.dataFloat
        let (n, t, h, w, c) = (Int64(key.x[0]), Int64(key.x[1]), Int64(key.x[2]), Int64(key.x[3]), Int64(key.x[4]))
        let (k, kt, kh, kw) = (Int64(key.w[0]), Int64(key.w[1]), Int64(key.w[2]), Int64(key.w[3]))
        let (to, ho, wo) = (Int64(out[0]), Int64(out[1]), Int64(out[2]))
        // NCDHW dims, NDHWC strides.
        let x = try tensor(Self.uidX, [n, c, t, h, w], [t * h * w * c, 1, h * w * c, w * c, c], io)
        let wt = try tensor(Self.uidW, [k, c, kt, kh, kw], [kt * kh * kw * c, 1, kh * kw * c, kw * c, c], io)
        let yDims: [Int64] = [n, k, to, ho, wo], yStrides: [Int64] = [to * ho * wo * k, 1, ho * wo * k, wo * k, k]
        let conv = try make(CuDNN.convolutionDescriptor) { d in
            var comp = CuDNN.dataFloat, mode = CuDNN.crossCorrelation, dims: Int64 = 3
            var dil: [Int64] = [1, 1, 1], str = key.stride.map(Int64.init), pre = key.pre.map(Int64.init), post = key.post.map(Int64.init)
            try set(d, CuDNN.attrConvCompType, CuDNN.typeDataType, &comp)
            try set(d, CuDNN.attrConvMode, CuDNN.typeConvolutionMode, &mode)
            try set(d, CuDNN.attrConvSpatialDims, CuDNN.typeInt64, &dims)
            try dnn.check(dnn.cudnnBackendSetAttribute(d, CuDNN.attrConvDilations, CuDNN.typeInt64, 3, &dil), "set CONVOLUTION_DILATIONS")
            try dnn.check(dnn.cudnnBackendSetAttribute(d, CuDNN.attrConvStrides, CuDNN.typeInt64, 3, &str), "set CONVOLUTION_FILTER_STRIDES")
            try dnn.check(dnn.cudnnBackendSetAttribute(d, CuDNN.attrConvPrePaddings, CuDNN.typeInt64, 3, &pre), "set CONVOLUTION_PRE_PADDINGS")
            try dnn.check(dnn.cudnnBackendSetAttribute(d, CuDNN.attrConvPostPaddings, CuDNN.typeInt64, 3, &post), "set CONVOLUTION_POST_PADDINGS")
        }
        let fused = key.bias || key.residual
        let y = fused ? try tensor(Self.uidConv, yDims, yStrides, CuDNN.dataFloat, virtual: true) : try tensor(Self.uidY, yDims, yStrides, io)
        let op = try make(CuDNN.operationConvForwardDescriptor) { o in
            var xx = x, ww = wt, yy = y, cd = conv
            var alpha: Float = 1, beta: Float = 0
            try set(o, CuDNN.attrOpConvX, CuDNN.typeBackendDescriptor, &xx)
            try set(o, CuDNN.attrOpConvW, CuDNN.typeBackendDescriptor, &ww)
            try set(o, CuDNN.attrOpConvY, CuDNN.typeBackendDescriptor, &yy)
            try set(o, CuDNN.attrOpConvDesc, CuDNN.typeBackendDescriptor, &cd)
            try set(o, CuDNN.attrOpConvAlpha, CuDNN.typeFloat, &alpha)
            try set(o, CuDNN.attrOpConvBeta, CuDNN.typeFloat, &beta)
        }
        guard fused else { return [op] }
        // Epilogue in float32: (+ bias) (+ residual), rounded to the storage type once.
        let out = try tensor(Self.uidY, yDims, yStrides, io)
        var ops = [op]
        var acc = y
        if key.bias {
            let bias = try tensor(Self.uidBias, [1, k, 1, 1, 1], [k, 1, 1, 1, 1], io)
            let biased = key.residual ? try tensor(Self.uidBiased, yDims, yStrides, CuDNN.dataFloat, virtual: true) : out
            ops.append(try pointwise(CuDNN.pwAdd, biased, acc, bias))
            acc = biased
        }
        if key.residual {
            let residual = try tensor(Self.uidResidual, yDims, yStrides, io)
            ops.append(try pointwise(CuDNN.pwAdd, out, acc, residual))
        }
        return ops
    }

    func execute(handle: CUhandle, x: UInt64, w: UInt64, y: UInt64, bias: UInt64?, residual: UInt64? = nil, workspace: UInt64,
                 plan candidate: CUhandle? = nil, on backend: CUDABackend? = nil, label: @autoclosure () -> String = "") throws {
        var uids = [Self.uidX, Self.uidW, Self.uidY]
        var ptrs = [x, w, y].map { UnsafeMutableRawPointer(bitPattern: UInt($0)) }
        if let bias { uids.append(Self.uidBias); ptrs.append(UnsafeMutableRawPointer(bitPattern: UInt(bias))) }
        if let residual { uids.append(Self.uidResidual); ptrs.append(UnsafeMutableRawPointer(bitPattern: UInt(residual))) }
        try execute(handle: handle, uids: uids, pointers: ptrs, workspace: workspace, plan: candidate, on: backend, label: label())
    }
}
