/// Byte-level helpers shared by the decoders.
enum UTF8Repair {
    /// Decodes `bytes` as UTF-8, writing U+FFFD for each byte that does not start a well-formed
    /// sequence (SentencePiece's byte-fallback decoding).
    static func replacingInvalidBytes(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let n = wellFormedLength(bytes, at: i)
            if n > 0 {
                out += bytes[i..<(i + n)]
                i += n
            } else {
                out += [0xEF, 0xBF, 0xBD]
                i += 1
            }
        }
        return out
    }

    /// The length of the well-formed UTF-8 sequence at `i` (Unicode table 3-7), or 0.
    static func wellFormedLength(_ b: [UInt8], at i: Int) -> Int {
        let c0 = b[i]
        func cont(_ k: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool {
            i + k < b.count && b[i + k] >= lo && b[i + k] <= hi
        }
        switch c0 {
        case 0x00...0x7F: return 1
        case 0xC2...0xDF: return cont(1) ? 2 : 0
        case 0xE0: return cont(1, 0xA0) && cont(2) ? 3 : 0
        case 0xE1...0xEC, 0xEE, 0xEF: return cont(1) && cont(2) ? 3 : 0
        case 0xED: return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0
        case 0xF0: return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0
        case 0xF1...0xF3: return cont(1) && cont(2) && cont(3) ? 4 : 0
        case 0xF4: return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0
        default: return 0
        }
    }

    /// `bytes` with every occurrence of `pattern` replaced by `replacement`.
    static func replacing(_ bytes: ArraySlice<UInt8>, _ pattern: [UInt8], with replacement: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            if bytes.endIndex - i >= pattern.count, bytes[i..<(i + pattern.count)].elementsEqual(pattern) {
                out += replacement
                i += pattern.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }
}
