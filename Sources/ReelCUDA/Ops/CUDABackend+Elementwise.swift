import Foundation
import ReelCore

// Elementwise ops (Kernels/elementwise.cu), row normalizations (norm.cu), softmax (softmax.cu),
// RoPE (rope.cu) and noise (random.cu).
extension CUDABackend {
    static func unaryCode(_ op: UnaryOp) -> Int32 {
        switch op {
        case .silu: 0
        case .geluTanh: 1
        case .gelu: 2
        case .relu: 3
        case .tanh: 4
        case .sigmoid: 5
        case .exp: 6
        case .neg: 7
        case .square: 8
        case .rsqrt: 9
        }
    }

    /// All addresses 16-byte aligned (the 8-wide kernels' vector accesses need it).
    static func aligned(_ pointers: UInt64...) -> Bool { pointers.allSatisfy { $0 % 16 == 0 } }

    static func binaryCode(_ op: BinaryOp) -> Int32 {
        switch op {
        case .add: 0
        case .sub: 1
        case .mul: 2
        case .div: 3
        case .maximum: 4
        case .minimum: 5
        }
    }

    private func unaryLaunch(_ x: Tensor, code: Int32, p0: Float, p1: Float, op: String) throws -> Tensor {
        try requireFloat(x, op)
        let y = try allocate(x.shape, dtype: x.dtype)
        let px = try arg(x, op), py = try arg(y, op)
        let wide = x.count % 8 == 0 && Self.aligned(px, py)
        try launch1D("elementwise", wide ? "unary_v8" : "unary", n: wide ? x.count / 8 : x.count, detail: op) { a in
            a.add(px); a.add(py); a.add(Int64(wide ? x.count / 8 : x.count)); a.add(x.dtype.kernelCode); a.add(y.dtype.kernelCode)
            a.add(code); a.add(p0); a.add(p1)
        }
        return y
    }

    public func unary(_ op: UnaryOp, _ x: Tensor) throws -> Tensor {
        try unaryLaunch(x, code: Self.unaryCode(op), p0: 0, p1: 0, op: op.rawValue)
    }

    public func affine(_ x: Tensor, scale: Float, bias: Float) throws -> Tensor {
        try unaryLaunch(x, code: 20, p0: scale, p1: bias, op: "affine")
    }

    public func clamp(_ x: Tensor, min: Float, max: Float) throws -> Tensor {
        try require(min <= max, "clamp", "min \(min) > max \(max)")
        return try unaryLaunch(x, code: 21, p0: min, p1: max, op: "clamp")
    }

    public func rgb8(_ frames: Tensor) throws -> Tensor {
        try requireFloat(frames, "rgb8")
        let y = try allocate(frames.shape, dtype: .uint8)
        let px = try arg(frames, "rgb8"), py = try arg(y, "rgb8")
        try launch1D("elementwise", "rgb8", n: frames.count) { a in
            a.add(px); a.add(py); a.add(Int64(frames.count)); a.add(frames.dtype.kernelCode)
        }
        return y
    }

    public func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        try requireFloat(a, op.rawValue); try requireFloat(b, op.rawValue)
        guard let shape = broadcastShapes(a.shape, b.shape) else {
            throw ReelError.invalidArgument(op: op.rawValue, message: "shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        let bc = try BcastArg.make(out: shape, operands: [a.shape, b.shape], op: op.rawValue)
        let y = try allocate(shape, dtype: a.dtype)
        let pa = try arg(a, op.rawValue), pb = try arg(b, op.rawValue), py = try arg(y, op.rawValue)
        let wide = y.count % 8 == 0 && bc.vectorizable(operands: 2) && Self.aligned(pa, pb, py)
        try launch1D("elementwise", wide ? "binary_v8" : "binary", n: wide ? y.count / 8 : y.count, detail: op.rawValue) { k in
            k.add(pa); k.add(pb); k.add(py); k.add(Int64(wide ? y.count / 8 : y.count))
            k.add(a.dtype.kernelCode); k.add(b.dtype.kernelCode); k.add(y.dtype.kernelCode); k.add(Self.binaryCode(op)); k.add(bc)
        }
        return y
    }

    public func modulate(_ x: Tensor, scale: Tensor, shift: Tensor) throws -> Tensor {
        for t in [x, scale, shift] { try requireFloat(t, "modulate") }
        guard let s1 = broadcastShapes(x.shape, scale.shape), let s2 = broadcastShapes(s1, shift.shape), s2 == x.shape else {
            throw ReelError.invalidArgument(op: "modulate", message: "scale \(scale.shape) and shift \(shift.shape) must broadcast to x \(x.shape)")
        }
        let bc = try BcastArg.make(out: x.shape, operands: [x.shape, scale.shape, shift.shape], op: "modulate")
        let y = try allocate(x.shape, dtype: x.dtype)
        let px = try arg(x, "modulate"), ps = try arg(scale, "modulate"), ph = try arg(shift, "modulate"), py = try arg(y, "modulate")
        let wide = y.count % 8 == 0 && bc.vectorizable(operands: 3) && Self.aligned(px, ps, ph, py)
        try launch1D("elementwise", wide ? "modulate_v8" : "modulate", n: wide ? y.count / 8 : y.count) { k in
            k.add(px); k.add(ps); k.add(ph); k.add(py); k.add(Int64(wide ? y.count / 8 : y.count))
            k.add(x.dtype.kernelCode); k.add(scale.dtype.kernelCode); k.add(shift.dtype.kernelCode); k.add(y.dtype.kernelCode); k.add(bc)
        }
        return y
    }

    public func axpby(_ alpha: Float, _ x: Tensor, _ beta: Float, _ y: Tensor) throws -> Tensor {
        try requireFloat(x, "axpby"); try requireFloat(y, "axpby")
        try require(x.shape == y.shape, "axpby", "shapes differ: \(x.shape) and \(y.shape)")
        let out = try allocate(x.shape, dtype: x.dtype)
        let px = try arg(x, "axpby"), py = try arg(y, "axpby"), po = try arg(out, "axpby")
        try launch1D("elementwise", "axpby", n: out.count) { k in
            k.add(alpha); k.add(px); k.add(beta); k.add(py); k.add(po); k.add(Int64(out.count))
            k.add(x.dtype.kernelCode); k.add(y.dtype.kernelCode); k.add(out.dtype.kernelCode)
        }
        return out
    }

    public func fill(_ tensor: Tensor, with value: Float) throws {
        let p = try arg(tensor, "fill")
        try launch1D("elementwise", "fill", n: tensor.count) { k in
            k.add(p); k.add(Int64(tensor.count)); k.add(tensor.dtype.kernelCode); k.add(value)
        }
    }

    public func cast(_ x: Tensor, to dtype: DType) throws -> Tensor {
        let y = try allocate(x.shape, dtype: dtype)
        if dtype == .fp8e4m3 || x.dtype == .fp8e4m3 {
            try require(cudaDevice.info.computeCapability.major * 10 + cudaDevice.info.computeCapability.minor >= 89, "cast",
                        "FP8 E4M3 needs compute capability 8.9 or newer; \(cudaDevice.info.name) is \(cudaDevice.info.arch)")
        }
        if dtype == x.dtype {
            let (py, px) = (try arg(y, "cast"), try arg(x, "cast"))
            try driver.check(profiled("memcpy " + ProfileTable.bytes(x.byteCount)) { driver.cuMemcpyDtoDAsync(py, px, x.byteCount, stream) },
                             "cuMemcpyDtoDAsync_v2")
            return y
        }
        let px = try arg(x, "cast"), py = try arg(y, "cast")
        try launch1D("elementwise", "cast", n: x.count) { k in
            k.add(px); k.add(py); k.add(Int64(x.count)); k.add(x.dtype.kernelCode); k.add(dtype.kernelCode)
        }
        return y
    }

    // MARK: Normalization

    /// Row norms over the last axis (mode 0 LayerNorm, 1 RMSNorm, 2 the VAE's L2 norm), optionally
    /// followed by SiLU. Three kernels: rows of 256 to 2048 in one warp's registers (`row_norm_v8`),
    /// narrow L2 rows of up to 256 in a group of 1 to 8 lanes' (`l2_norm_group_v8`, SiLU fused), the scalar
    /// `row_norm` otherwise (SiLU as its own pass).
    private func rowNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float, scale: Float, mode: Int32,
                         silu: Bool = false, output: Tensor? = nil, op: String) throws -> Tensor {
        try requireFloat(x, op)
        try require(x.rank >= 1 && x.shape.last > 0, op, "needs a non-empty last axis, got \(x.shape)")
        let c = x.shape.last
        for (label, t) in [("weight", weight), ("bias", bias)] {
            if let t {
                try requireFloat(t, op)
                try require(t.count == c, op, "\(label) has \(t.count) elements for rows of \(c)")
            }
        }
        let rows = x.count / c
        let px = try arg(x, op), pw = try arg(weight, op), pb = try arg(bias, op)
        // The vector kernels need every pointer 16-byte aligned (fresh allocations are; a given output may not be).
        let y = try output ?? allocate(x.shape, dtype: x.dtype)
        let py = try arg(y, op)
        let vectors = c % 8 == 0 && Self.aligned(px, pw == 0 ? 16 : pw, pb == 0 ? 16 : pb, py)
        if rows == 0 { return y }
        if mode == 2 && vectors && c <= 256 {
            // Lanes per row: the smallest power of two holding the row in at most 4 vectors a lane.
            var lanes = 1
            while lanes * 4 < c / 8 { lanes *= 2 }
            let rowsPerBlock = 256 / lanes * 2   // L2G_ROWS = 2
            try launch("norm", "l2_norm_group_v8", grid: ((rows + rowsPerBlock - 1) / rowsPerBlock, 1, 1), block: (256, 1, 1)) { k in
                k.add(px); k.add(pw); k.add(py); k.add(Int64(rows)); k.add(Int32(c)); k.add(Int32(lanes)); k.add(eps); k.add(scale)
                k.add(Int32(silu ? 1 : 0))
                k.add(x.dtype.kernelCode); k.add((weight?.dtype ?? .f32).kernelCode); k.add(y.dtype.kernelCode)
            }
            return y
        }
        // A warp per row, the register-held kernel in blocks of 4 warps (its ~72 registers a lane: 28 warps an SM) up to
        // 2048 values, a block of 128 threads a row up to 8192; otherwise the three-pass kernel.
        let held = vectors && c >= 256 ? rowKernel("row_norm", c: c, rows: rows) : nil
        let wide = held != nil
        let (kernel, grid, block) = held ?? ("row_norm", ((rows + 7) / 8, 1, 1), (256, 1, 1))
        try launch("norm", kernel, grid: grid, block: block) { k in
            k.add(px); k.add(pw); k.add(pb); k.add(py); k.add(Int64(rows)); k.add(Int32(c))
            k.add(eps); k.add(scale); k.add(mode)
            if wide { k.add(Int32(silu ? 1 : 0)) }   // the wide kernel applies SiLU itself
            k.add(x.dtype.kernelCode); k.add((weight?.dtype ?? .f32).kernelCode); k.add((bias?.dtype ?? .f32).kernelCode); k.add(y.dtype.kernelCode)
        }
        guard silu && !wide else { return y }
        let activated = try unary(.silu, y)
        if let output { try copyWhole(activated, into: output, op: op); return output }
        return activated
    }

    public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) throws -> Tensor {
        try rowNorm(x, weight: weight, bias: bias, eps: eps, scale: 1, mode: 0, op: "layerNorm")
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) throws -> Tensor {
        try rowNorm(x, weight: weight, bias: nil, eps: eps, scale: 1, mode: 1, op: "rmsNorm")
    }

    public func l2Norm(_ x: Tensor, weight: Tensor?, scale: Float, eps: Float) throws -> Tensor {
        try rowNorm(x, weight: weight, bias: nil, eps: eps, scale: scale, mode: 2, op: "l2Norm")
    }

    public func l2NormSiLU(_ x: Tensor, weight: Tensor?, scale: Float, eps: Float) throws -> Tensor {
        try rowNorm(x, weight: weight, bias: nil, eps: eps, scale: scale, mode: 2, silu: true, op: "l2NormSiLU")
    }

    public func l2NormSiLU(_ x: Tensor, weight: Tensor?, scale: Float, eps: Float, into out: Tensor) throws {
        try require(out.count == x.count && out.dtype == x.dtype, "l2NormSiLU",
                    "output \(out.shape) \(out.dtype) does not hold the result \(x.shape) \(x.dtype)")
        _ = try rowNorm(x, weight: weight, bias: nil, eps: eps, scale: scale, mode: 2, silu: true,
                        output: try out.reshaped(x.shape), op: "l2NormSiLU")
    }

    public func softmax(_ x: Tensor) throws -> Tensor {
        try requireFloat(x, "softmax")
        try require(x.rank >= 1 && x.shape.last > 0, "softmax", "needs a non-empty last axis, got \(x.shape)")
        let c = x.shape.last, rows = x.count / c
        let y = try allocate(x.shape, dtype: x.dtype)
        let px = try arg(x, "softmax"), py = try arg(y, "softmax")
        if rows == 0 { return y }
        try launch("softmax", "softmax_rows", grid: ((rows + 7) / 8, 1, 1), block: (256, 1, 1)) { k in
            k.add(px); k.add(py); k.add(Int64(rows)); k.add(Int32(c)); k.add(x.dtype.kernelCode); k.add(y.dtype.kernelCode)
        }
        return y
    }

    // MARK: Position

    public func rope3d(_ x: Tensor, grid: RoPEGrid) throws -> Tensor {
        try requireFloat(x, "rope3d")
        try require(x.rank == 4, "rope3d", "expected x [B, L, H, D], got \(x.shape)")
        let (b, l, h, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        try require(l == grid.tokens, "rope3d", "L = \(l) but the grid \(grid.frames)x\(grid.height)x\(grid.width) has \(grid.tokens) tokens")
        try require(d % 2 == 0 && d >= 6, "rope3d", "head dim \(d) must be even and at least 6")
        try require(grid.frameOffset >= 0, "rope3d", "negative frame offset \(grid.frameOffset)")
        let split = RoPEGrid.pairSplit(headDim: d)
        let y = try allocate(x.shape, dtype: x.dtype)
        let px = try arg(x, "rope3d"), py = try arg(y, "rope3d")
        try launch1D("rope", "rope3d", n: b * l * d / 2) { k in
            k.add(px); k.add(py); k.add(Int64(b * l)); k.add(Int32(l)); k.add(Int32(h)); k.add(Int32(d))
            k.add(Int32(grid.height)); k.add(Int32(grid.width)); k.add(Int64(grid.frameOffset)); k.add(grid.theta)
            k.add(Int32(split.t)); k.add(Int32(split.h)); k.add(Int32(split.w))
            k.add(x.dtype.kernelCode); k.add(y.dtype.kernelCode)
        }
        return y
    }

    // MARK: Random

    public func randomNormal(_ shape: Shape, seed: UInt64, offset: UInt64, dtype: DType) throws -> Tensor {
        try require([.f32, .f16, .bf16].contains(dtype), "randomNormal", "\(dtype) is not a float storage type")
        let y = try allocate(shape, dtype: dtype)
        let py = try arg(y, "randomNormal")
        try launch1D("random", "philox_normal", n: y.count) { k in
            k.add(py); k.add(Int64(y.count)); k.add(seed); k.add(offset); k.add(dtype.kernelCode)
        }
        return y
    }
}
