import Foundation

/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"), the counter-based
/// generator behind every random number Reel draws. Being counter-based, element i of a noise tensor
/// depends only on (seed, i): the CPU backend, the CUDA kernel and this host code agree exactly.
public enum Philox {
    public static let m0: UInt32 = 0xD251_1F53
    public static let m1: UInt32 = 0xCD9E_8D57
    public static let w0: UInt32 = 0x9E37_79B9
    public static let w1: UInt32 = 0xBB67_AE85

    /// Ten rounds over a 128-bit counter with a 64-bit key.
    @inlinable
    public static func block(counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
        var c = counter
        var k = key
        for _ in 0..<10 {
            let p0 = UInt64(m0) &* UInt64(c.0)
            let p1 = UInt64(m1) &* UInt64(c.2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            c = (hi1 ^ c.1 ^ k.0, lo1, hi0 ^ c.3 ^ k.1, lo0)
            k = (k.0 &+ w0, k.1 &+ w1)
        }
        return c
    }
}

/// Standard normal samples from Philox: one Box-Muller draw per element index.
///
/// The transform runs in float64 (`u1 = (x0 + 1) / 2^32` in (0, 1], `u2 = x1 / 2^32`,
/// `z = sqrt(-2 ln u1) cos(2 pi u2)`) and is rounded to float32 once, so backends whose float64
/// `log`/`cos` differ in the last bit of a double still agree on the float32 result.
public enum PhiloxNormal {
    @inlinable
    public static func sample(seed: UInt64, index: UInt64) -> Float {
        let key = (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
        let ctr = (UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32), UInt32(0), UInt32(0))
        let r = Philox.block(counter: ctr, key: key)
        let u1 = (Double(r.0) + 1) / 4_294_967_296.0
        let u2 = Double(r.1) / 4_294_967_296.0
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    /// Fills `out` with samples `offset ..< offset + out.count`.
    public static func fill(_ out: UnsafeMutableBufferPointer<Float>, seed: UInt64, offset: UInt64) {
        for i in 0..<out.count { out[i] = sample(seed: seed, index: offset &+ UInt64(i)) }
    }
}
