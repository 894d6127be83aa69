import ReelCore

/// A DEFLATE (RFC 1951) decoder and its zlib wrapper (RFC 1950), for PNG's IDAT stream: stored,
/// fixed-Huffman and dynamic-Huffman blocks, the 32 KiB window, the Adler-32 check.
///
/// Hostile input cannot make it loop or allocate without bound: every step consumes input bits or
/// emits output, output past `limit` bytes is an error, and codes are read from lookup tables built
/// from at most 320 code lengths. Errors are `Inflate.Failure` (the caller names the file).
enum Inflate {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// The data of a zlib stream, at most `limit` bytes; checks the header and the Adler-32.
    static func zlib(_ data: [UInt8], limit: Int) throws -> [UInt8] {
        guard data.count >= 2 else { throw Failure(description: "zlib stream of \(data.count) bytes") }
        let cmf = Int(data[0]), flg = Int(data[1])
        guard cmf & 0x0F == 8, cmf >> 4 <= 7, (cmf * 256 + flg) % 31 == 0 else {
            throw Failure(description: "bad zlib header \(cmf), \(flg)")
        }
        guard flg & 0x20 == 0 else { throw Failure(description: "zlib preset dictionary is not allowed") }
        var bits = BitReader(data, from: 2)
        let out = try inflate(&bits, limit: limit)
        let at = bits.alignedByte
        guard at + 4 <= data.count else { throw Failure(description: "zlib stream ends before its Adler-32") }
        let stored = data[at..<(at + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard stored == Adler32.checksum(out) else { throw Failure(description: "Adler-32 mismatch (corrupt data)") }
        return out
    }

    /// Decodes blocks until the final one.
    static func inflate(_ bits: inout BitReader, limit: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(min(limit, 1 << 24))
        var final = false
        while !final {
            final = try bits.take(1) == 1
            switch try bits.take(2) {
            case 0: try stored(&bits, into: &out, limit: limit)
            case 1: try codes(&bits, Fixed.literals, Fixed.distances, into: &out, limit: limit)
            case 2:
                let (lit, dist) = try dynamicTables(&bits)
                try codes(&bits, lit, dist, into: &out, limit: limit)
            default: throw Failure(description: "invalid block type 3")
            }
        }
        return out
    }

    private static func stored(_ bits: inout BitReader, into out: inout [UInt8], limit: Int) throws {
        bits.alignToByte()
        let len = try bits.take(16), nlen = try bits.take(16)
        guard len ^ nlen == 0xFFFF else { throw Failure(description: "stored block length check failed") }
        guard out.count + len <= limit else { throw Failure(description: "more data than the image holds") }
        out += try bits.bytes(len)
    }

    private static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59,
                                     67, 83, 99, 115, 131, 163, 195, 227, 258]
    private static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4,
                                      5, 5, 5, 5, 0]
    private static let distanceBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513,
                                       769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    private static let distanceExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10,
                                        11, 11, 12, 12, 13, 13]

    /// Literal/length and distance codes up to the end-of-block symbol.
    private static func codes(_ bits: inout BitReader, _ lit: Huffman, _ dist: Huffman,
                              into out: inout [UInt8], limit: Int) throws {
        while true {
            let symbol = try lit.decode(&bits)
            if symbol < 256 {
                guard out.count < limit else { throw Failure(description: "more data than the image holds") }
                out.append(UInt8(symbol))
                continue
            }
            if symbol == 256 { return }
            let li = symbol - 257
            guard li < lengthBase.count else { throw Failure(description: "invalid length symbol \(symbol)") }
            let length = lengthBase[li] + (try bits.take(lengthExtra[li]))
            let di = try dist.decode(&bits)
            guard di < distanceBase.count else { throw Failure(description: "invalid distance symbol \(di)") }
            let distance = distanceBase[di] + (try bits.take(distanceExtra[di]))
            guard distance <= out.count else { throw Failure(description: "distance \(distance) before the start") }
            guard out.count + length <= limit else { throw Failure(description: "more data than the image holds") }
            let from = out.count - distance
            for k in 0..<length { out.append(out[from + k]) }
        }
    }

    /// Order in which code-length code lengths are stored (RFC 1951 3.2.7).
    private static let lengthOrder = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

    private static func dynamicTables(_ bits: inout BitReader) throws -> (Huffman, Huffman) {
        let hlit = try bits.take(5) + 257, hdist = try bits.take(5) + 1, hclen = try bits.take(4) + 4
        guard hlit <= 286, hdist <= 30 else { throw Failure(description: "too many codes (\(hlit), \(hdist))") }
        var clens = [Int](repeating: 0, count: 19)
        for i in 0..<hclen { clens[lengthOrder[i]] = try bits.take(3) }
        let lengthCode = try Huffman(lengths: clens)
        var lengths: [Int] = []
        while lengths.count < hlit + hdist {
            let symbol = try lengthCode.decode(&bits)
            switch symbol {
            case 0...15: lengths.append(symbol)
            case 16:
                guard let last = lengths.last else { throw Failure(description: "repeat with no previous length") }
                lengths += repeatElement(last, count: 3 + (try bits.take(2)))
            case 17: lengths += repeatElement(0, count: 3 + (try bits.take(3)))
            default: lengths += repeatElement(0, count: 11 + (try bits.take(7)))
            }
        }
        guard lengths.count == hlit + hdist else { throw Failure(description: "code lengths overrun") }
        guard lengths[256] > 0 else { throw Failure(description: "no end-of-block code") }
        return (try Huffman(lengths: Array(lengths[0..<hlit])), try Huffman(lengths: Array(lengths[hlit...])))
    }

    private enum Fixed {
        // RFC 1951 3.2.6; both sets are complete codes, so the unchecked initializer is safe.
        static let literals = Huffman(checked: (0..<288).map { $0 < 144 ? 8 : $0 < 256 ? 9 : $0 < 280 ? 7 : 8 })
        static let distances = Huffman(checked: [Int](repeating: 5, count: 30))
    }
}

/// A canonical Huffman code as a lookup table indexed by the next `maxLength` input bits (first bit
/// lowest, as DEFLATE packs them): each entry holds symbol << 4 | code length, 0 for an unused code.
struct Huffman {
    let table: [UInt32]
    let maxLength: Int

    /// Throws for lengths outside 0...15 and for over-subscribed sets, which cannot be decoded;
    /// incomplete sets leave holes in the table that decode as errors.
    init(lengths: [Int]) throws {
        guard lengths.allSatisfy({ (0...15).contains($0) }) else {
            throw Inflate.Failure(description: "Huffman code length out of range")
        }
        var count = [Int](repeating: 0, count: 16)
        for l in lengths { count[l] += 1 }
        var left = 1
        for l in 1..<16 {
            left = left * 2 - count[l]
            guard left >= 0 else { throw Inflate.Failure(description: "over-subscribed Huffman code") }
        }
        self.init(checked: lengths)
    }

    /// The table of lengths already checked by `init(lengths:)` (or known valid).
    init(checked lengths: [Int]) {
        let maxLength = lengths.max() ?? 0
        var count = [Int](repeating: 0, count: 16)
        for l in lengths { count[l] += 1 }
        count[0] = 0
        var next = [Int](repeating: 0, count: 16)
        var code = 0
        for l in 1..<16 {
            code = (code + count[l - 1]) << 1
            next[l] = code
        }
        var table = [UInt32](repeating: 0, count: 1 << max(maxLength, 1))
        for (symbol, l) in lengths.enumerated() where l > 0 {
            let c = next[l]
            next[l] += 1
            var reversed = 0
            for k in 0..<l where c & (1 << k) != 0 { reversed |= 1 << (l - 1 - k) }
            // Every table index whose low `l` bits are the code maps to it.
            var i = reversed
            while i < table.count {
                table[i] = UInt32(symbol << 4 | l)
                i += 1 << l
            }
        }
        self.table = table
        self.maxLength = maxLength
    }

    func decode(_ bits: inout BitReader) throws -> Int {
        let entry = Int(table[bits.peek(maxLength)])
        let length = entry & 15
        guard length > 0 else { throw Inflate.Failure(description: "invalid Huffman code") }
        try bits.skip(length)
        return entry >> 4
    }
}

/// Reads bits least significant first from a byte array; reading past the end throws.
struct BitReader {
    private let data: [UInt8]
    private var bitPosition: Int

    init(_ data: [UInt8], from byte: Int) {
        self.data = data
        bitPosition = byte * 8
    }

    /// The next `n` (<= 24) bits without consuming them; bits past the end read as 0.
    func peek(_ n: Int) -> Int {
        var v = 0
        let byte = bitPosition >> 3
        for k in 0..<4 where byte + k < data.count { v |= Int(data[byte + k]) << (8 * k) }
        return (v >> (bitPosition & 7)) & ((1 << n) - 1)
    }

    mutating func skip(_ n: Int) throws {
        guard bitPosition + n <= data.count * 8 else { throw Inflate.Failure(description: "truncated stream") }
        bitPosition += n
    }

    mutating func take(_ n: Int) throws -> Int {
        let v = peek(n)
        try skip(n)
        return v
    }

    mutating func alignToByte() { bitPosition = (bitPosition + 7) & ~7 }

    /// Index of the first byte after the current bit, rounded up.
    var alignedByte: Int { (bitPosition + 7) >> 3 }

    mutating func bytes(_ n: Int) throws -> ArraySlice<UInt8> {
        let start = bitPosition >> 3
        guard start + n <= data.count else { throw Inflate.Failure(description: "truncated stored block") }
        bitPosition += 8 * n
        return data[start..<(start + n)]
    }
}
