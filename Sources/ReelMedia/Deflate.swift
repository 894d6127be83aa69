import ReelCore
/// A small DEFLATE (RFC 1951) encoder and its zlib wrapper (RFC 1950): greedy LZ77 over a 32 KiB
/// window with a hash of the next 3 bytes, coded with the fixed Huffman codes in one block. Enough
/// to make PNGs several times smaller than stored blocks, and simple enough to check by reading.
public enum Deflate {
    /// A zlib stream (header 0x78 0x01, one fixed-Huffman block, Adler-32) of `data`.
    public static func zlib(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]   // deflate, 32K window; (0x78 * 256 + 0x01) % 31 == 0
        out += deflate(data)
        let adler = Adler32.checksum(data)
        out += [UInt8(adler >> 24), UInt8((adler >> 16) & 0xFF), UInt8((adler >> 8) & 0xFF), UInt8(adler & 0xFF)]
        return out
    }

    /// A raw DEFLATE stream of one final block with the fixed Huffman codes.
    public static func deflate(_ data: [UInt8]) -> [UInt8] {
        var bits = BitWriter()
        bits.write(1, count: 1)      // BFINAL
        bits.write(1, count: 2)      // BTYPE = 01, fixed Huffman
        let n = data.count
        let hashBits = 15
        var head = [Int32](repeating: -1, count: 1 << hashBits)
        func hash(_ i: Int) -> Int {
            let v = Int(data[i]) << 16 | Int(data[i + 1]) << 8 | Int(data[i + 2])
            return (v &* 2_654_435_761) >> (32 - hashBits) & ((1 << hashBits) - 1)
        }
        var i = 0
        while i < n {
            var length = 0, distance = 0
            if i + 3 <= n {
                let h = hash(i)
                let candidate = Int(head[h])
                head[h] = Int32(i)
                if candidate >= 0, i - candidate <= 32768 {
                    let limit = min(258, n - i)
                    var l = 0
                    while l < limit, data[candidate + l] == data[i + l] { l += 1 }
                    if l >= 3 { length = l; distance = i - candidate }
                }
            }
            if length >= 3 {
                writeLength(length, &bits)
                writeDistance(distance, &bits)
                // Index the positions the match covers so later matches can find them.
                var j = i + 1
                while j < i + length, j + 3 <= n {
                    head[hash(j)] = Int32(j)
                    j += 1
                }
                i += length
            } else {
                writeLiteral(Int(data[i]), &bits)
                i += 1
            }
        }
        writeLiteral(256, &bits)     // end of block
        return bits.finish()
    }

    // Fixed Huffman code of a literal/length symbol (RFC 1951 3.2.6).
    private static func writeLiteral(_ symbol: Int, _ bits: inout BitWriter) {
        switch symbol {
        case 0...143: bits.writeCode(0x30 + symbol, length: 8)
        case 144...255: bits.writeCode(0x190 + symbol - 144, length: 9)
        case 256...279: bits.writeCode(symbol - 256, length: 7)
        default: bits.writeCode(0xC0 + symbol - 280, length: 8)
        }
    }

    private static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59,
                                     67, 83, 99, 115, 131, 163, 195, 227, 258]
    private static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    private static let distanceBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769,
                                       1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    private static let distanceExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    private static func writeLength(_ length: Int, _ bits: inout BitWriter) {
        var code = lengthBase.count - 1
        while lengthBase[code] > length { code -= 1 }
        writeLiteral(257 + code, &bits)
        bits.write(UInt32(length - lengthBase[code]), count: lengthExtra[code])
    }

    private static func writeDistance(_ distance: Int, _ bits: inout BitWriter) {
        var code = distanceBase.count - 1
        while distanceBase[code] > distance { code -= 1 }
        bits.writeCode(code, length: 5)
        bits.write(UInt32(distance - distanceBase[code]), count: distanceExtra[code])
    }
}

/// Packs bits least-significant first, as DEFLATE stores them.
struct BitWriter {
    private(set) var bytes: [UInt8] = []
    private var buffer: UInt64 = 0
    private var filled = 0

    /// Writes the low `count` bits of `value`, least significant first (extra bits, headers).
    mutating func write(_ value: UInt32, count: Int) {
        guard count > 0 else { return }
        buffer |= UInt64(value & ((1 << count) - 1)) << filled
        filled += count
        while filled >= 8 {
            bytes.append(UInt8(buffer & 0xFF))
            buffer >>= 8
            filled -= 8
        }
    }

    /// Writes a Huffman code, whose bits go most significant first.
    mutating func writeCode(_ code: Int, length: Int) {
        var reversed: UInt32 = 0
        for k in 0..<length where code & (1 << k) != 0 { reversed |= 1 << (length - 1 - k) }
        write(reversed, count: length)
    }

    /// Flushes the last partial byte.
    mutating func finish() -> [UInt8] {
        if filled > 0 { bytes.append(UInt8(buffer & 0xFF)) }
        buffer = 0
        filled = 0
        return bytes
    }
}
