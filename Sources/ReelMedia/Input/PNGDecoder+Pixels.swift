import ReelCore

/// Undoes PNG's row filters and turns samples of any colour type and depth into RGB8 (alpha over black).
struct PNGPixels {
    let header: PNGHeader
    let palette: [UInt8]
    let transparency: [UInt8]
    let fail: (String) -> ReelError

    init(header: PNGHeader, palette: [UInt8], transparency: [UInt8], fail: @escaping (String) -> ReelError) {
        self.header = header
        self.palette = palette
        self.transparency = transparency
        self.fail = fail
    }

    /// The RGB image from the inflated data (`raw.count == header.rawBytes`).
    func rgb(_ raw: [UInt8]) throws -> [UInt8] {
        var data = raw
        var out = [UInt8](repeating: 0, count: header.width * header.height * 3)
        var offset = 0
        for pass in header.passes where pass.width > 0 && pass.height > 0 {
            let stride = header.rowBytes(pass.width) + 1
            try unfilter(&data, from: offset, rows: pass.height, stride: stride)
            for y in 0..<pass.height {
                let row = offset + y * stride + 1
                let outY = pass.y0 + y * pass.dy
                for x in 0..<pass.width {
                    let i = 3 * (outY * header.width + pass.x0 + x * pass.dx)
                    let (r, g, b) = try pixel(data, row: row, x: x)
                    out[i] = r
                    out[i + 1] = g
                    out[i + 2] = b
                }
            }
            offset += pass.height * stride
        }
        return out
    }

    /// Undoes the filters of `rows` rows starting at `from`, in place (RFC 2083 section 6).
    private func unfilter(_ d: inout [UInt8], from: Int, rows: Int, stride: Int) throws {
        let step = header.filterStep
        try d.withUnsafeMutableBufferPointer { d in
            for y in 0..<rows {
                let row = from + y * stride
                let filter = d[row]
                let prev = row - stride   // the previous row's filter byte (not used when y == 0)
                for i in 1..<stride {
                    let a = i > step ? Int(d[row + i - step]) : 0
                    let b = y > 0 ? Int(d[prev + i]) : 0
                    let c = i > step && y > 0 ? Int(d[prev + i - step]) : 0
                    let predictor: Int
                    switch filter {
                    case 0: predictor = 0
                    case 1: predictor = a
                    case 2: predictor = b
                    case 3: predictor = (a + b) >> 1
                    case 4: predictor = PNGEncoder.paeth(a, b, c)
                    default: throw fail("unknown filter type \(filter) in row \(y)")
                    }
                    d[row + i] = d[row + i] &+ UInt8(truncatingIfNeeded: predictor)
                }
            }
        }
    }

    /// Sample `index` of a row (bit depth 1...16), as stored.
    @inline(__always)
    private func sample(_ d: [UInt8], row: Int, index: Int) -> Int {
        switch header.bitDepth {
        case 8: return Int(d[row + index])
        case 16: return Int(d[row + 2 * index]) << 8 | Int(d[row + 2 * index + 1])
        default:
            let bit = index * header.bitDepth
            let shift = 8 - header.bitDepth - bit % 8
            return Int(d[row + bit / 8] >> shift) & ((1 << header.bitDepth) - 1)
        }
    }

    /// A stored sample scaled to 0...255.
    @inline(__always)
    private func to8(_ v: Int) -> Int {
        switch header.bitDepth {
        case 8: v
        case 16: (v * 255 + 32767) / 65535
        default: v * 255 / ((1 << header.bitDepth) - 1)
        }
    }

    /// The `tRNS` sample `k` (16 bits each) for colour types 0 and 2.
    private func key(_ k: Int) -> Int? {
        guard transparency.count >= 2 * k + 2 else { return nil }
        return Int(transparency[2 * k]) << 8 | Int(transparency[2 * k + 1])
    }

    private func pixel(_ d: [UInt8], row: Int, x: Int) throws -> (UInt8, UInt8, UInt8) {
        let n = header.channels
        var r = 0, g = 0, b = 0, alpha = 255
        switch header.colorType {
        case 0:
            let v = sample(d, row: row, index: x)
            r = to8(v); g = r; b = r
            if let k = key(0), k == v { alpha = 0 }
        case 2:
            let s = (sample(d, row: row, index: n * x), sample(d, row: row, index: n * x + 1),
                     sample(d, row: row, index: n * x + 2))
            (r, g, b) = (to8(s.0), to8(s.1), to8(s.2))
            if let k0 = key(0), let k1 = key(1), let k2 = key(2), (k0, k1, k2) == s { alpha = 0 }
        case 3:
            let index = sample(d, row: row, index: x)
            guard 3 * index + 2 < palette.count else {
                throw fail("palette index \(index) past the \(palette.count / 3)-entry palette")
            }
            (r, g, b) = (Int(palette[3 * index]), Int(palette[3 * index + 1]), Int(palette[3 * index + 2]))
            if index < transparency.count { alpha = Int(transparency[index]) }
        case 4:
            r = to8(sample(d, row: row, index: 2 * x)); g = r; b = r
            alpha = to8(sample(d, row: row, index: 2 * x + 1))
        default:
            r = to8(sample(d, row: row, index: 4 * x))
            g = to8(sample(d, row: row, index: 4 * x + 1))
            b = to8(sample(d, row: row, index: 4 * x + 2))
            alpha = to8(sample(d, row: row, index: 4 * x + 3))
        }
        if alpha < 255 {
            // Over black: c * a / 255, rounded to nearest.
            r = (r * alpha + 127) / 255; g = (g * alpha + 127) / 255; b = (b * alpha + 127) / 255
        }
        return (UInt8(r), UInt8(g), UInt8(b))
    }
}
