import ReelCore
import ReelMedia

/// A minimal inflater for the two block types Reel's encoder writes (stored and fixed Huffman),
/// so the tests can read back what `Deflate` wrote.
enum TestInflate {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func zlib(_ data: [UInt8]) throws -> [UInt8] {
        guard data.count >= 6, (Int(data[0]) * 256 + Int(data[1])) % 31 == 0, data[0] & 0x0F == 8 else {
            throw Failure(description: "bad zlib header")
        }
        let out = try inflate(Array(data[2..<(data.count - 4)]))
        let a = data.suffix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard a == Adler32.checksum(out) else { throw Failure(description: "Adler-32 mismatch") }
        return out
    }

    static func inflate(_ data: [UInt8]) throws -> [UInt8] {
        var pos = 0
        func bit() throws -> Int {
            guard pos / 8 < data.count else { throw Failure(description: "ran out of input") }
            defer { pos += 1 }
            return Int(data[pos / 8] >> (pos % 8)) & 1
        }
        func bits(_ n: Int) throws -> Int { var v = 0; for k in 0..<n { v |= try bit() << k }; return v }
        func code(_ n: Int) throws -> Int { var v = 0; for _ in 0..<n { v = v << 1 | (try bit()) }; return v }
        func literal() throws -> Int {
            var v = try code(7)
            if v <= 0x17 { return v + 256 }
            v = v << 1 | (try bit())
            if v >= 0x30 && v <= 0xBF { return v - 0x30 }
            if v >= 0xC0 && v <= 0xC7 { return v - 0xC0 + 280 }
            v = v << 1 | (try bit())
            return v - 0x190 + 144
        }
        let lBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
        let lExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
        let dBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
                     4097, 6145, 8193, 12289, 16385, 24577]
        let dExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]
        var out: [UInt8] = []
        var final = 0
        repeat {
            final = try bits(1)
            switch try bits(2) {
            case 0:
                pos = (pos + 7) / 8 * 8
                let len = try bits(16), nlen = try bits(16)
                guard len ^ nlen == 0xFFFF else { throw Failure(description: "stored length check") }
                for _ in 0..<len { out.append(UInt8(try bits(8))) }
            case 1:
                while true {
                    let s = try literal()
                    if s < 256 { out.append(UInt8(s)); continue }
                    if s == 256 { break }
                    let li = s - 257
                    guard li < lBase.count else { throw Failure(description: "bad length code") }
                    let length = lBase[li] + (try bits(lExtra[li]))
                    let di = try code(5)
                    guard di < dBase.count else { throw Failure(description: "bad distance code") }
                    let distance = dBase[di] + (try bits(dExtra[di]))
                    guard distance <= out.count else { throw Failure(description: "distance beyond output") }
                    for _ in 0..<length { out.append(out[out.count - distance]) }
                }
            default:
                throw Failure(description: "dynamic Huffman blocks are not used by Reel's encoder")
            }
        } while final == 0
        return out
    }
}
