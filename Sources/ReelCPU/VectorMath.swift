import Foundation

/// Eight float32 lanes: one AVX register on the x86-64 build, the unit of every SIMD loop here.
typealias F8 = SIMD8<Float>

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> F8 {
    UnsafeRawPointer(p).loadUnaligned(as: F8.self)
}

@inline(__always) func store8(_ v: F8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self)
}

/// Eight lanes from `p` with element stride 1, or `p[0]` repeated when the stride is 0
/// (a broadcast operand), or a gather otherwise.
@inline(__always) func load8(_ p: UnsafePointer<Float>, stride s: Int) -> F8 {
    if s == 1 { return load8(p) }
    if s == 0 { return F8(repeating: p[0]) }
    return F8(p[0], p[s], p[2 * s], p[3 * s], p[4 * s], p[5 * s], p[6 * s], p[7 * s])
}

// The standard library's pointwiseMin/Max and clamped(lowerBound:upperBound:) are generic calls
// that split the vector in SSE halves; a compare and blend is one instruction each.
@inline(__always) func max8(_ a: F8, _ b: F8) -> F8 { a.replacing(with: b, where: a .< b) }
@inline(__always) func min8(_ a: F8, _ b: F8) -> F8 { a.replacing(with: b, where: b .< a) }

/// e^x to about 2 ulp (Cephes `expf`): 2^n * e^r with |r| <= ln2/2 and a degree-6 polynomial.
/// Saturates to +inf above 88.7 and returns 0 below -87.3 (no subnormal results).
@inline(__always) func exp8(_ x: F8) -> F8 {
    let hi = F8(repeating: 88.72283), lo = F8(repeating: -87.33654)
    let xc = min8(max8(x, lo), hi)
    // Round x / ln2 to the nearest integer by adding 1.5 * 2^23 (the integer lands in the low bits).
    let magic = F8(repeating: 12_582_912)
    let t = xc * 1.442_695_04 + magic
    let n = t - magic
    var r = xc - n * 0.693_359_375
    r = r - n * -2.121_944_4e-4
    var p = F8(repeating: 1.987_569_15e-4)
    p = F8(repeating: 1.398_199_950_7e-3).addingProduct(p, r)
    p = F8(repeating: 8.333_451_907_3e-3).addingProduct(p, r)
    p = F8(repeating: 4.166_579_589_4e-2).addingProduct(p, r)
    p = F8(repeating: 1.666_666_545_9e-1).addingProduct(p, r)
    p = F8(repeating: 5.000_000_120_1e-1).addingProduct(p, r)
    let y = (r + 1).addingProduct(p, r * r)
    let ni = unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let scale = unsafeBitCast((ni &+ 127) &<< 23, to: F8.self)
    var out = y * scale
    out.replace(with: 0, where: x .< lo)
    out.replace(with: .infinity, where: x .> hi)
    return out
}

@inline(__always) func sigmoid8(_ x: F8) -> F8 { 1 / (1 + exp8(-x)) }

/// tanh(x) = 1 - 2 / (e^{2x} + 1); small |x| uses x - x^3/3 + 2x^5/15 to keep relative accuracy.
@inline(__always) func tanh8(_ x: F8) -> F8 {
    var y = 1 - 2 / (exp8(x + x) + 1)
    let x2 = x * x
    var poly: F8 = x2 * (-17.0 / 315) + 2.0 / 15
    poly = poly * x2 - 1.0 / 3
    let small: F8 = x * (poly * x2 + 1)
    y.replace(with: small, where: abs8(x) .< 0.0625)
    return y
}

@inline(__always) func abs8(_ x: F8) -> F8 {
    unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: F8.self)
}

/// GELU, tanh approximation (PyTorch `approximate="tanh"`).
@inline(__always) func geluTanh8(_ x: F8) -> F8 {
    let x3: F8 = x * x * x
    let inner: F8 = (x + 0.044715 * x3) * 0.797_884_560_802_865_4
    let t: F8 = tanh8(inner) + 1
    return 0.5 * x * t
}
