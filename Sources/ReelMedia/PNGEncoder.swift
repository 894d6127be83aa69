import ReelCore

/// Encodes 8-bit RGB images as PNG (ISO/IEC 15948): signature, IHDR (color type 2, no interlace),
/// one IDAT holding a zlib stream of the filtered rows, IEND; every chunk ends with its CRC-32.
/// Each row gets the filter (None, Sub, Up, Average, Paeth) with the smallest sum of absolute
/// values, the usual heuristic.
public enum PNGEncoder {
    public static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// The PNG file of one `width` x `height` RGB image (`rgb.count == width * height * 3`).
    public static func encode(width: Int, height: Int, rgb: ArraySlice<UInt8>) throws -> [UInt8] {
        guard width > 0, height > 0, width <= 0x7FFF_FFFF, height <= 0x7FFF_FFFF, rgb.count == width * height * 3 else {
            throw ReelError.invalidArgument(op: "PNGEncoder", message: "\(rgb.count) bytes for a \(width)x\(height) RGB image")
        }
        var out = signature
        var ihdr: [UInt8] = []
        ihdr += bigEndian(UInt32(width)) + bigEndian(UInt32(height))
        ihdr += [8, 2, 0, 0, 0]   // bit depth 8, RGB, deflate, adaptive filtering, no interlace
        chunk("IHDR", ihdr, into: &out)
        chunk("IDAT", Deflate.zlib(filtered(width: width, height: height, rgb: rgb)), into: &out)
        chunk("IEND", [], into: &out)
        return out
    }

    static func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    private static func chunk(_ type: String, _ data: [UInt8], into out: inout [UInt8]) {
        let typeBytes = Array(type.utf8)
        out += bigEndian(UInt32(data.count))
        var crc = CRC32()
        crc.update(typeBytes)
        crc.update(data)
        out += typeBytes
        out += data
        out += bigEndian(crc.value)
    }

    /// Rows, each prefixed by its filter type byte.
    static func filtered(width: Int, height: Int, rgb: ArraySlice<UInt8>) -> [UInt8] {
        let stride = width * 3
        let px = Array(rgb)
        var out = [UInt8]()
        out.reserveCapacity(height * (stride + 1))
        let zero = [UInt8](repeating: 0, count: stride)
        var candidate = [[UInt8]](repeating: [UInt8](repeating: 0, count: stride), count: 5)
        for y in 0..<height {
            let row = px[(y * stride)..<((y + 1) * stride)]
            let prev = y == 0 ? zero[...] : px[((y - 1) * stride)..<(y * stride)]
            let r = Array(row), p = Array(prev)
            var best = 0, bestCost = Int.max
            for f in 0..<5 {
                var cost = 0
                for i in 0..<stride {
                    let a = i >= 3 ? Int(r[i - 3]) : 0
                    let b = Int(p[i])
                    let c = i >= 3 ? Int(p[i - 3]) : 0
                    let predictor: Int
                    switch f {
                    case 0: predictor = 0
                    case 1: predictor = a
                    case 2: predictor = b
                    case 3: predictor = (a + b) / 2
                    default: predictor = paeth(a, b, c)
                    }
                    let v = UInt8(truncatingIfNeeded: Int(r[i]) - predictor)
                    candidate[f][i] = v
                    cost += v < 128 ? Int(v) : 256 - Int(v)
                }
                if cost < bestCost { bestCost = cost; best = f }
            }
            out.append(UInt8(best))
            out += candidate[best]
        }
        return out
    }

    static func paeth(_ a: Int, _ b: Int, _ c: Int) -> Int {
        let p = a + b - c
        let pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
        if pa <= pb && pa <= pc { return a }
        return pb <= pc ? b : c
    }
}
