import Foundation
import ReelCore

extension CPUBackend {
    public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) throws -> Tensor {
        try rowwise("layerNorm", x, weight, bias) { row, out, c, w, b in
            // Two passes (mean, then centred squares): as accurate as PyTorch's Welford in float32.
            let mean = sum8(row, c) / Float(c)
            var acc = F8()
            var i = 0
            let m8 = F8(repeating: mean)
            while i + 8 <= c { let d = load8(row + i) - m8; acc += d * d; i += 8 }
            var v = acc.sum()
            while i < c { let d = row[i] - mean; v += d * d; i += 1 }
            let inv = 1 / (v / Float(c) + eps).squareRoot()
            scaleRow(row, out, c, shift: mean, scale: inv, w, b)
        }
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) throws -> Tensor {
        try rowwise("rmsNorm", x, weight, nil) { row, out, c, w, _ in
            let inv = 1 / (sumSquares8(row, c) / Float(c) + eps).squareRoot()
            scaleRow(row, out, c, shift: 0, scale: inv, w, nil)
        }
    }

    public func l2Norm(_ x: Tensor, weight: Tensor?, scale: Float, eps: Float) throws -> Tensor {
        try rowwise("l2Norm", x, weight, nil) { row, out, c, w, _ in
            // Wan VAE RMS_norm: F.normalize(x, dim=channels) * sqrt(C) * gamma.
            let norm = sumSquares8(row, c).squareRoot()
            scaleRow(row, out, c, shift: 0, scale: scale / Swift.max(norm, eps), w, nil)
        }
    }

    public func softmax(_ x: Tensor) throws -> Tensor {
        try rowwise("softmax", x, nil, nil) { row, out, c, _, _ in
            softmaxRow(row, out, c)
        }
    }

    /// Runs `body(row, outRow, channels, weight, bias)` on every row of the last axis, in parallel.
    private func rowwise(_ op: String, _ x: Tensor, _ weight: Tensor?, _ bias: Tensor?,
                         _ body: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, UnsafePointer<Float>?, UnsafePointer<Float>?) -> Void) throws -> Tensor {
        try requireFloat(x, op)
        try require(x.rank >= 1, op, "expected at least one axis, got a scalar")
        let c = x.shape.last
        try requireVector(weight, c, "weight", op)
        try requireVector(bias, c, "bias", op)
        if let weight { try requireFloat(weight, op) }
        if let bias { try requireFloat(bias, op) }
        let xin = try floats(x, op)
        let win = try weight.map { try floats($0, op) }
        let bin = try bias.map { try floats($0, op) }
        let rows = c == 0 ? 0 : x.count / c
        return try makeOutput(x.shape, x.dtype) { out in
            let src = xin.pointer
            let w = win.map { UnsafePointer($0.pointer) }, b = bin.map { UnsafePointer($0.pointer) }
            parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(c, 1))) { r in
                for i in r { body(src + i * c, out + i * c, c, w, b) }
            }
        }
    }
}

@inline(__always) func sum8(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var a0 = F8(), a1 = F8()
    var i = 0
    while i + 16 <= n { a0 += load8(p + i); a1 += load8(p + i + 8); i += 16 }
    while i + 8 <= n { a0 += load8(p + i); i += 8 }
    var s = (a0 + a1).sum()
    while i < n { s += p[i]; i += 1 }
    return s
}

@inline(__always) func sumSquares8(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var a0 = F8(), a1 = F8()
    var i = 0
    while i + 16 <= n {
        let x = load8(p + i), y = load8(p + i + 8)
        a0 = a0.addingProduct(x, x); a1 = a1.addingProduct(y, y); i += 16
    }
    while i + 8 <= n { let x = load8(p + i); a0 = a0.addingProduct(x, x); i += 8 }
    var s = (a0 + a1).sum()
    while i < n { s += p[i] * p[i]; i += 1 }
    return s
}

@inline(__always) func maxOfRow(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var m = F8(repeating: -.infinity)
    var i = 0
    while i + 8 <= n { m = max8(m, load8(p + i)); i += 8 }
    var s = m.max()
    while i < n { s = Swift.max(s, p[i]); i += 1 }
    return s
}

/// out = (row - shift) * scale [* w] [+ b].
@inline(__always) func scaleRow(_ row: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ c: Int,
                                shift: Float, scale: Float, _ w: UnsafePointer<Float>?, _ b: UnsafePointer<Float>?) {
    let s8 = F8(repeating: scale), m8 = F8(repeating: shift)
    var i = 0
    while i + 8 <= c {
        var y = (load8(row + i) - m8) * s8
        if let w { y *= load8(w + i) }
        if let b { y += load8(b + i) }
        store8(y, out + i)
        i += 8
    }
    while i < c {
        var y = (row[i] - shift) * scale
        if let w { y *= w[i] }
        if let b { y += b[i] }
        out[i] = y
        i += 1
    }
}

/// out = softmax(row); `out` may be `row`.
@inline(__always) func softmaxRow(_ row: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ c: Int) {
    let m = maxOfRow(row, c)
    // A row of -inf (fully masked) gives zeros rather than NaN.
    let shift = m == -.infinity ? 0 : m
    var acc = F8()
    var i = 0
    let m8 = F8(repeating: shift)
    while i + 8 <= c { let e = exp8(load8(row + i) - m8); store8(e, out + i); acc += e; i += 8 }
    if i < c {
        var v = F8(repeating: -.infinity)
        for j in i..<c { v[j - i] = row[j] }
        let e = exp8(v - m8)
        for j in i..<c { out[j] = e[j - i]; acc[j - i] += e[j - i] }
    }
    let total = acc.sum()
    let inv = total > 0 ? 1 / total : 0
    i = 0
    let s8 = F8(repeating: inv)
    while i + 8 <= c { store8(load8(out + i) * s8, out + i); i += 8 }
    while i < c { out[i] *= inv; i += 1 }
}
