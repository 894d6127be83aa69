import Foundation
import ReelCore

extension CPUBackend {
    public func unary(_ op: UnaryOp, _ x: Tensor) throws -> Tensor {
        try requireFloat(x, "unary.\(op)")
        let xin = try floats(x, "unary.\(op)")
        let n = x.count
        return try makeOutput(x.shape, x.dtype) { out in
            let src = xin.pointer
            parallelFor(n, grain: 8192) { r in
                switch op {
                case .silu: map8(src, out, r) { $0 * sigmoid8($0) }
                case .geluTanh: map8(src, out, r) { geluTanh8($0) }
                case .gelu:
                    for i in r { out[i] = 0.5 * src[i] * (1 + erf(src[i] * 0.707_106_781_186_547_5)) }
                case .relu: map8(src, out, r) { $0.replacing(with: 0, where: $0 .< 0) }
                case .tanh: map8(src, out, r) { tanh8($0) }
                case .sigmoid: map8(src, out, r) { sigmoid8($0) }
                case .exp: map8(src, out, r) { exp8($0) }
                case .neg: map8(src, out, r) { -$0 }
                case .square: map8(src, out, r) { $0 * $0 }
                case .rsqrt: for i in r { out[i] = 1 / src[i].squareRoot() }
                }
            }
        }
    }

    public func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        let name = "binary.\(op)"
        try requireFloat(a, name); try requireFloat(b, name)
        guard let shape = broadcastShapes(a.shape, b.shape) else {
            throw ReelError.invalidArgument(op: name, message: "shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        let ain = try floats(a, name), bin = try floats(b, name)
        let plan = BroadcastPlan(output: shape, inputs: [a.shape, b.shape])
        return try makeOutput(shape, a.dtype) { out in
            let pa = ain.pointer, pb = bin.pointer
            plan.forEachRun(self) { o, offsets, n in
                let sa = plan.innerStrides[0], sb = plan.innerStrides[1]
                let x = pa + offsets[0], y = pb + offsets[1], z = out + o
                switch op {
                case .add: zip8(x, sa, y, sb, z, n) { $0 + $1 }
                case .sub: zip8(x, sa, y, sb, z, n) { $0 - $1 }
                case .mul: zip8(x, sa, y, sb, z, n) { $0 * $1 }
                case .div: zip8(x, sa, y, sb, z, n) { $0 / $1 }
                case .maximum: zip8(x, sa, y, sb, z, n) { max8($0, $1) }
                case .minimum: zip8(x, sa, y, sb, z, n) { min8($0, $1) }
                }
            }
        }
    }

    public func axpby(_ alpha: Float, _ x: Tensor, _ beta: Float, _ y: Tensor) throws -> Tensor {
        try requireFloat(x, "axpby"); try requireFloat(y, "axpby")
        try require(x.shape == y.shape, "axpby", "shapes \(x.shape) and \(y.shape) differ")
        let xin = try floats(x, "axpby"), yin = try floats(y, "axpby")
        return try makeOutput(x.shape, x.dtype) { out in
            let px = xin.pointer, py = yin.pointer
            parallelFor(x.count, grain: 8192) { r in
                zip8(px + r.lowerBound, 1, py + r.lowerBound, 1, out + r.lowerBound, r.count) { alpha * $0 + beta * $1 }
            }
        }
    }

    public func affine(_ x: Tensor, scale: Float, bias: Float) throws -> Tensor {
        try requireFloat(x, "affine")
        let xin = try floats(x, "affine")
        return try makeOutput(x.shape, x.dtype) { out in
            let src = xin.pointer
            parallelFor(x.count, grain: 8192) { r in map8(src, out, r) { $0 * scale + bias } }
        }
    }

    public func clamp(_ x: Tensor, min lo: Float, max hi: Float) throws -> Tensor {
        try requireFloat(x, "clamp")
        try require(lo <= hi, "clamp", "min \(lo) > max \(hi)")
        let xin = try floats(x, "clamp")
        return try makeOutput(x.shape, x.dtype) { out in
            let src = xin.pointer
            let l = F8(repeating: lo), h = F8(repeating: hi)
            parallelFor(x.count, grain: 8192) { r in map8(src, out, r) { min8(max8($0, l), h) } }
        }
    }

    public func rgb8(_ frames: Tensor) throws -> Tensor {
        try requireFloat(frames, "rgb8")
        let xin = try floats(frames, "rgb8")
        let out = try allocate(frames.shape, dtype: .uint8)
        let dst = out.hostPointer!.assumingMemoryBound(to: UInt8.self), src = xin.pointer
        parallelFor(frames.count, grain: 1 << 16) { r in
            for i in r { dst[i] = RGB8.byte(src[i]) }
        }
        return out
    }

    public func modulate(_ x: Tensor, scale: Tensor, shift: Tensor) throws -> Tensor {
        try requireFloat(x, "modulate"); try requireFloat(scale, "modulate"); try requireFloat(shift, "modulate")
        for t in [scale, shift] {
            try require(broadcastShapes(x.shape, t.shape) == x.shape, "modulate",
                        "\(t.shape) does not broadcast to x \(x.shape)")
        }
        let xin = try floats(x, "modulate"), sin = try floats(scale, "modulate"), hin = try floats(shift, "modulate")
        let plan = BroadcastPlan(output: x.shape, inputs: [x.shape, scale.shape, shift.shape])
        return try makeOutput(x.shape, x.dtype) { out in
            let px = xin.pointer, ps = sin.pointer, ph = hin.pointer
            plan.forEachRun(self) { o, offsets, n in
                let sx = plan.innerStrides[0], ss = plan.innerStrides[1], sh = plan.innerStrides[2]
                let xp = px + offsets[0], sp = ps + offsets[1], hp = ph + offsets[2], z = out + o
                var i = 0
                while i + 8 <= n {
                    let v = load8(xp + i * sx, stride: sx)
                    let s = load8(sp + i * ss, stride: ss)
                    let h = load8(hp + i * sh, stride: sh)
                    store8(v * (1 + s) + h, z + i)
                    i += 8
                }
                while i < n {
                    z[i] = xp[i * sx] * (1 + sp[i * ss]) + hp[i * sh]
                    i += 1
                }
            }
        }
    }
}

// MARK: - Loops shared by the elementwise ops.

/// out[i] = f(src[i]) for i in r, eight lanes at a time.
@inline(__always)
func map8(_ src: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ r: Range<Int>, _ f: (F8) -> F8) {
    var i = r.lowerBound
    while i + 8 <= r.upperBound {
        store8(f(load8(src + i)), out + i)
        i += 8
    }
    if i < r.upperBound {
        // The tail goes through a zero-padded vector so that it sees exactly the same function.
        var v = F8()
        for j in i..<r.upperBound { v[j - i] = src[j] }
        let y = f(v)
        for j in i..<r.upperBound { out[j] = y[j - i] }
    }
}

/// z[i] = f(x[i * sx], y[i * sy]) for i < n.
@inline(__always)
func zip8(_ x: UnsafePointer<Float>, _ sx: Int, _ y: UnsafePointer<Float>, _ sy: Int,
          _ z: UnsafeMutablePointer<Float>, _ n: Int, _ f: (F8, F8) -> F8) {
    var i = 0
    while i + 8 <= n {
        store8(f(load8(x + i * sx, stride: sx), load8(y + i * sy, stride: sy)), z + i)
        i += 8
    }
    if i < n {
        var a = F8(), b = F8()
        for j in i..<n { a[j - i] = x[j * sx]; b[j - i] = y[j * sy] }
        let c = f(a, b)
        for j in i..<n { z[j] = c[j - i] }
    }
}

/// NumPy broadcasting of several inputs to one output shape, with adjacent axes merged wherever
/// every input is contiguous across them, walked as runs along the innermost merged axis.
struct BroadcastPlan {
    /// Extents of the merged axes.
    let dims: [Int]
    /// Element strides of each input along each merged axis (0 where it is broadcast).
    let strides: [[Int]]
    /// Stride of each input along the innermost merged axis.
    let innerStrides: [Int]
    let count: Int

    init(output: Shape, inputs: [Shape]) {
        let rank = output.rank
        // Strides aligned to the output's axes.
        var full: [[Int]] = inputs.map { s in
            let st = s.strides
            return (0..<rank).map { i in
                let j = i - (rank - s.rank)
                return j < 0 || s.dims[j] == 1 ? 0 : st[j]
            }
        }
        var dims = output.dims
        // Drop unit axes, then merge each axis into the one before it where every input is
        // contiguous across both.
        let keep = (0..<rank).filter { dims[$0] != 1 }
        dims = keep.map { dims[$0] }
        full = full.map { st in keep.map { st[$0] } }
        var mDims: [Int] = []
        var mStrides: [[Int]] = Array(repeating: [], count: inputs.count)
        for (i, d) in dims.enumerated() {
            if let last = mDims.last,
               (0..<inputs.count).allSatisfy({ mStrides[$0].last! == full[$0][i] * d }) {
                mDims[mDims.count - 1] = last * d
                for k in 0..<inputs.count { mStrides[k][mStrides[k].count - 1] = full[k][i] }
            } else {
                mDims.append(d)
                for k in 0..<inputs.count { mStrides[k].append(full[k][i]) }
            }
        }
        if mDims.isEmpty {
            mDims = [1]
            mStrides = mStrides.map { _ in [0] }
        }
        self.dims = mDims
        self.strides = mStrides
        self.innerStrides = mStrides.map { $0.last! }
        self.count = output.count
    }

    /// Calls `body(outputOffset, inputOffsets, length)` for runs along the innermost axis that
    /// cover the output exactly once, spread over the backend's workers.
    func forEachRun(_ backend: CPUBackend, _ body: (Int, [Int], Int) -> Void) {
        let inner = dims.last!
        let outerDims = Array(dims.dropLast())
        let nIn = strides.count
        backend.parallelFor(count, grain: 16384) { r in
            var i = r.lowerBound
            var offsets = [Int](repeating: 0, count: nIn)
            while i < r.upperBound {
                var row = i / inner
                let col = i % inner
                let len = Swift.min(inner - col, r.upperBound - i)
                for k in 0..<nIn { offsets[k] = 0 }
                var axis = outerDims.count - 1
                while axis >= 0 {
                    let d = outerDims[axis]
                    let idx = row % d
                    row /= d
                    for k in 0..<nIn { offsets[k] += idx * strides[k][axis] }
                    axis -= 1
                }
                for k in 0..<nIn { offsets[k] += col * innerStrides[k] }
                body(i, offsets, len)
                i += len
            }
        }
    }
}
