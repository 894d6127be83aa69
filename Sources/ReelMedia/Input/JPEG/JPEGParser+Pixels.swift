import Foundation
import ReelCore

extension JPEGParser {
    /// `cos((2x + 1) u pi / 16) * C(u) / 2` at `[x * 8 + u]`, C(0) = 1/sqrt(2), C(u > 0) = 1.
    static let cosines: [Float] = (0..<64).map { i in
        let (x, u) = (Double(i / 8), Double(i % 8))
        return Float(cos((2 * x + 1) * u * Double.pi / 16) * (u == 0 ? 0.5.squareRoot() : 1) / 2)
    }

    /// The inverse DCT of one block (natural order), level-shifted by 128, rounded and clamped, written
    /// into component `c`'s plane at block (`blockX`, `blockY`). Separable in float: rows, then columns;
    /// a row with no AC coefficient is a constant (most are, after quantisation).
    mutating func idct(_ f: [Float], into c: Int, blockX: Int, blockY: Int) {
        var rows = [Float](repeating: 0, count: 64)   // [v][x]
        Self.cosines.withUnsafeBufferPointer { k in
            for v in 0..<8 {
                let r = v * 8
                if (1..<8).allSatisfy({ f[r + $0] == 0 }) {
                    let dc = f[r] * k[0]
                    for x in 0..<8 { rows[r + x] = dc }
                    continue
                }
                for x in 0..<8 {
                    var s: Float = 0
                    for u in 0..<8 { s += k[x * 8 + u] * f[r + u] }
                    rows[r + x] = s
                }
            }
            let stride = components[c].blocksWide * 8
            let base = blockY * 8 * stride + blockX * 8
            components[c].plane.withUnsafeMutableBufferPointer { plane in
                for y in 0..<8 {
                    for x in 0..<8 {
                        var s: Float = 0
                        for v in 0..<8 { s += k[y * 8 + v] * rows[v * 8 + x] }
                        plane[base + y * stride + x] = UInt8(max(0, min(255, (s + 128).rounded())))
                    }
                }
            }
        }
    }

    /// The decoded image as RGB8: greyscale copied to all three channels; colour planes upsampled to full
    /// size and converted from YCbCr (JFIF: `R = Y + 1.402 (Cr - 128)`, `G = Y - 0.344136 (Cb - 128) -
    /// 0.714136 (Cr - 128)`, `B = Y + 1.772 (Cb - 128)`) unless marked RGB (Adobe transform 0, or
    /// component ids 'R', 'G', 'B').
    func pixels() throws -> RGBFrames {
        let count = width * height
        var out = [UInt8](repeating: 0, count: count * 3)
        if components.count == 1 {
            let c = components[0], stride = c.blocksWide * 8
            for y in 0..<height {
                for x in 0..<width {
                    let s = c.plane[y * stride + x], o = 3 * (y * width + x)
                    out[o] = s; out[o + 1] = s; out[o + 2] = s
                }
            }
            return try RGBFrames(width: width, height: height, pixels: out)
        }
        // Row by row: memory beyond the planes and the output stays one row a component.
        let samplers = components.map { RowSampler($0, width: width, height: height, hmax: hmax, vmax: vmax) }
        let isRGB = adobeTransform == 0 || components.map(\.id) == Array("RGB".utf8)
        var rows = [[Float]](repeating: [Float](repeating: 0, count: width), count: 3)
        out.withUnsafeMutableBufferPointer { o in
            for y in 0..<height {
                for c in 0..<3 { samplers[c].row(y, into: &rows[c]) }
                let base = y * width
                for x in 0..<width {
                    let i = 3 * (base + x)
                    if isRGB {
                        o[i] = clampRound(rows[0][x]); o[i + 1] = clampRound(rows[1][x]); o[i + 2] = clampRound(rows[2][x])
                        continue
                    }
                    let (yy, cb, cr) = (rows[0][x], rows[1][x] - 128, rows[2][x] - 128)
                    o[i] = clampRound(yy + 1.402 * cr)
                    o[i + 1] = clampRound(yy - 0.344136 * cb - 0.714136 * cr)
                    o[i + 2] = clampRound(yy + 1.772 * cb)
                }
            }
        }
        return try RGBFrames(width: width, height: height, pixels: out)
    }
}

/// A component's samples at full image size, a row at a time: bilinear between sample centres, edges clamped
/// (libjpeg's "fancy" upsampling for 2:1, weights 3/4 and 1/4); a full-size component is copied.
private struct RowSampler {
    let component: JPEGComponent
    let stride: Int, factorY: Int, rowsUsed: Int
    /// Per output column: the two sample columns and the weight of the second.
    let xs: [(Int, Int, Float)]

    init(_ c: JPEGComponent, width: Int, height: Int, hmax: Int, vmax: Int) {
        component = c
        stride = c.blocksWide * 8
        let (fx, fy) = (hmax / c.h, vmax / c.v)
        factorY = fy
        rowsUsed = (height + fy - 1) / fy
        let cw = (width + fx - 1) / fx
        xs = (0..<width).map { Self.taps($0, fx, cw) }
    }

    static func taps(_ i: Int, _ factor: Int, _ n: Int) -> (Int, Int, Float) {
        if factor == 1 { return (i, i, 0) }
        let s = (Float(i) + 0.5) / Float(factor) - 0.5
        let lo = Int(s.rounded(.down)), t = s - Float(lo)
        return (min(max(lo, 0), n - 1), min(max(lo + 1, 0), n - 1), t)
    }

    func row(_ y: Int, into out: inout [Float]) {
        let (y0, y1, ty) = Self.taps(y, factorY, rowsUsed)
        let (r0, r1) = (y0 * stride, y1 * stride)
        component.plane.withUnsafeBufferPointer { p in
            for (x, (x0, x1, tx)) in xs.enumerated() {
                let a = Float(p[r0 + x0]) * (1 - tx) + Float(p[r0 + x1]) * tx
                let b = Float(p[r1 + x0]) * (1 - tx) + Float(p[r1 + x1]) * tx
                out[x] = a * (1 - ty) + b * ty
            }
        }
    }
}

@inline(__always) private func clampRound(_ v: Float) -> UInt8 { UInt8(max(0, min(255, v.rounded()))) }
