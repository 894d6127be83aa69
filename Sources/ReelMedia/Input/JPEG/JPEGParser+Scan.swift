import ReelCore

/// A Huffman table in canonical form (T.81 annex C): codes of each length counted up from the previous
/// length's last, shifted left. Codes of up to 9 bits are looked up in one step, longer ones by length.
struct JPEGHuffmanTable {
    static let fastBits = 9
    /// `length << 8 | symbol` for each 9-bit prefix whose code is at most 9 bits; 0 where it is longer.
    private var fast = [UInt16](repeating: 0, count: 1 << fastBits)
    /// Per length 1...16: the largest code (-1: none), and where its symbols start minus its first code.
    private var maxCode = [Int](repeating: -1, count: 17)
    private var offset = [Int](repeating: 0, count: 17)
    private let symbols: [UInt8]

    /// nil when the counts give more codes than their lengths have room for.
    init?(counts: [UInt8], symbols: [UInt8]) {
        self.symbols = symbols
        var code = 0, k = 0
        for length in 1...16 {
            let n = Int(counts[length - 1])
            if n > 0 {
                offset[length] = k - code
                for _ in 0..<n {
                    if length <= Self.fastBits {
                        let shift = Self.fastBits - length
                        for low in 0..<(1 << shift) { fast[code << shift | low] = UInt16(length << 8) | UInt16(symbols[k]) }
                    }
                    code += 1; k += 1
                }
                maxCode[length] = code - 1
            }
            guard code <= 1 << length else { return nil }
            code <<= 1
        }
    }

    /// The next symbol; nil when the bits are no code of the table.
    func decode(_ bits: inout JPEGBitReader) -> UInt8? {
        let peek = bits.peek16()
        let hit = fast[Int(peek >> (16 - Self.fastBits))]
        if hit != 0 {
            bits.skip(Int(hit >> 8))
            return UInt8(truncatingIfNeeded: hit)
        }
        for length in (Self.fastBits + 1)...16 {
            let code = Int(peek >> (16 - length))
            if code <= maxCode[length] {
                bits.skip(length)
                return symbols[offset[length] + code]
            }
        }
        return nil
    }
}

/// Bits of entropy-coded data, most significant first, with 0xFF00 unstuffed. It stops at a marker and
/// then feeds zero bytes, counted, so that reading past the data's end (truncation) is seen, not looped on.
struct JPEGBitReader {
    let data: [UInt8]
    var pos: Int
    private var buffer: UInt64 = 0
    private var count = 0
    /// Bits in `buffer` that were fed past a marker or the end of the data.
    private var fakeBits = 0
    /// True once a fed zero bit was consumed: the scan wanted more data than it had.
    private(set) var overran = false
    /// Where a marker was met (its 0xFF), nil before.
    private(set) var markerAt: Int?

    init(data: [UInt8], pos: Int) { self.data = data; self.pos = pos }

    private mutating func fill() {
        while count <= 56 {
            var byte: UInt8 = 0
            if markerAt == nil, pos < data.count {
                if data[pos] != 0xFF {
                    byte = data[pos]; pos += 1
                } else if pos + 1 < data.count, data[pos + 1] == 0 {
                    byte = 0xFF; pos += 2
                } else {
                    markerAt = pos
                    fakeBits += 8
                }
            } else {
                fakeBits += 8
            }
            buffer |= UInt64(byte) << UInt64(56 - count)
            count += 8
        }
    }

    mutating func peek16() -> UInt16 {
        if count < 16 { fill() }
        return UInt16(truncatingIfNeeded: buffer >> 48)
    }

    mutating func skip(_ n: Int) {
        if count < n { fill() }
        buffer <<= UInt64(n)
        count -= n
        if count < fakeBits { overran = true }
    }

    /// `n` (0...16) bits as an unsigned number.
    mutating func bits(_ n: Int) -> Int {
        guard n > 0 else { return 0 }
        if count < n { fill() }
        let v = Int(buffer >> UInt64(64 - n))
        skip(n)
        return v
    }

    /// Drops the bits left in the current byte and what is buffered: the next read starts at `pos`.
    mutating func realign() {
        buffer = 0; count = 0; fakeBits = 0; overran = false; markerAt = nil
    }
}

extension JPEGParser {
    /// Zigzag index -> natural (row-major) index in an 8x8 block.
    static let zigzag: [Int] = [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
        28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
        54, 47, 55, 62, 63,
    ]

    /// A scan header (`body`) and the entropy-coded data after it, decoded into the components' planes.
    mutating func scan(_ body: Range<Int>) throws {
        guard !components.isEmpty else { throw fail("a scan before the frame header") }
        guard body.count >= 1 else { throw fail("scan header too short") }
        let n = Int(data[body.lowerBound])
        guard (1...components.count).contains(n), body.count >= 1 + 2 * n + 3 else {
            throw fail("scan header of \(n) components")
        }
        var members: [Int] = []
        for i in 0..<n {
            let o = body.lowerBound + 1 + 2 * i
            guard let c = components.firstIndex(where: { $0.id == data[o] }), !members.contains(c) else {
                throw fail("scan names component \(data[o]), which the frame does not have (or twice)")
            }
            guard !components[c].decoded else { throw fail("component \(data[o]) in a second scan (progressive data?)") }
            let (dc, ac) = (Int(data[o + 1] >> 4), Int(data[o + 1] & 15))
            guard dc < 4, ac < 4, dcTables[dc] != nil, acTables[ac] != nil else {
                throw fail("scan uses Huffman tables DC \(dc) / AC \(ac), which were not defined")
            }
            guard quant[components[c].quantTable] != nil else {
                throw fail("quantisation table \(components[c].quantTable) was not defined")
            }
            components[c].dcTable = dc; components[c].acTable = ac; components[c].predictor = 0
            members.append(c)
        }
        let s = body.lowerBound + 1 + 2 * n
        guard data[s] == 0, data[s + 1] == 63, data[s + 2] == 0 else {
            throw fail("spectral selection \(data[s])...\(data[s + 1]), approximation \(hex(data[s + 2])): not a baseline scan")
        }
        var bits = JPEGBitReader(data: data, pos: pos)
        // One component alone: its blocks in raster order over its own size; several: whole MCUs.
        let units: (wide: Int, high: Int)
        if n == 1 {
            let c = components[members[0]]
            let cw = (width * c.h + hmax - 1) / hmax, ch = (height * c.v + vmax - 1) / vmax
            units = ((cw + 7) / 8, (ch + 7) / 8)
        } else {
            units = (mcusWide, mcusHigh)
        }
        var coefficients = [Float](repeating: 0, count: 64)
        var restarts = 0
        for unit in 0..<(units.wide * units.high) {
            if restartInterval > 0, unit > 0, unit % restartInterval == 0 {
                try restart(&bits, expect: restarts % 8)
                restarts += 1
                for c in members { components[c].predictor = 0 }
            }
            let (ux, uy) = (unit % units.wide, unit / units.wide)
            for c in members {
                let (h, v) = n == 1 ? (1, 1) : (components[c].h, components[c].v)
                for by in 0..<v {
                    for bx in 0..<h {
                        try decodeBlock(c, &bits, &coefficients)
                        idct(coefficients, into: c, blockX: ux * h + bx, blockY: uy * v + by)
                    }
                }
            }
            if bits.overran { throw fail("truncated: the scan's data ends at MCU \(unit) of \(units.wide * units.high)") }
        }
        for c in members { components[c].decoded = true }
        // After the scan: skip to the next marker (libjpeg tolerates stray bytes here too).
        pos = bits.markerAt ?? bits.pos
        while pos + 1 < data.count, !(data[pos] == 0xFF && data[pos + 1] != 0 && data[pos + 1] != 0xFF) { pos += 1 }
        if pos + 1 >= data.count { pos = data.count }
    }

    /// At a restart interval's end: the RSTn marker numbered `n` must come next.
    private mutating func restart(_ bits: inout JPEGBitReader, expect n: Int) throws {
        var p = bits.markerAt ?? bits.pos
        while p + 1 < data.count, !(data[p] == 0xFF && data[p + 1] != 0 && data[p + 1] != 0xFF) { p += 1 }
        guard p + 1 < data.count else { throw fail("truncated: the data ends where restart marker \(n) belongs") }
        guard data[p + 1] == 0xD0 + UInt8(n) else {
            throw fail("expected restart marker RST\(n), found FF\(hex(data[p + 1]))")
        }
        bits.pos = p + 2
        bits.realign()
    }

    /// One 8x8 block's coefficients, dequantised, in natural order.
    private mutating func decodeBlock(_ c: Int, _ bits: inout JPEGBitReader, _ out: inout [Float]) throws {
        let dcTable = dcTables[components[c].dcTable]!, acTable = acTables[components[c].acTable]!
        let q = quant[components[c].quantTable]!
        for i in 0..<64 { out[i] = 0 }
        guard let t = dcTable.decode(&bits), t <= 11 else { throw fail("bad DC code in the scan's data (corrupt?)") }
        components[c].predictor += extend(bits.bits(Int(t)), Int(t))
        guard abs(components[c].predictor) <= 1 << 15 else { throw fail("DC value out of range (corrupt data)") }
        out[0] = Float(components[c].predictor * q[0])
        var k = 1
        while k < 64 {
            guard let rs = acTable.decode(&bits) else { throw fail("bad AC code in the scan's data (corrupt?)") }
            let (run, size) = (Int(rs >> 4), Int(rs & 15))
            if size == 0 {
                if run == 15 { k += 16; continue }   // ZRL: sixteen zeros
                break                                 // EOB
            }
            k += run
            guard k < 64, size <= 10 else { throw fail("AC coefficient past the block's end (corrupt data)") }
            out[Self.zigzag[k]] = Float(extend(bits.bits(size), size) * q[k])
            k += 1
        }
        guard k <= 64 else { throw fail("run of zeros past the block's end (corrupt data)") }
    }

    /// A `size`-bit difference as T.81 codes it: values below 2^(size-1) are negative.
    private func extend(_ v: Int, _ size: Int) -> Int {
        size == 0 ? 0 : v < 1 << (size - 1) ? v - (1 << size) + 1 : v
    }
}
