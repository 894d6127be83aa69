import ReelCore

/// One component of a JPEG frame, with the samples its scans have decoded.
struct JPEGComponent {
    let id: UInt8
    /// Sampling factors (1...4).
    let h: Int, v: Int
    let quantTable: Int
    /// Blocks across and down its plane, padded to whole MCUs.
    let blocksWide: Int, blocksHigh: Int
    /// Samples, `blocksWide * 8` per row.
    var plane: [UInt8]
    var dcTable = 0, acTable = 0
    var predictor = 0
    var decoded = false
}

/// The marker-level reader behind `JPEGDecoder` (its doc comment gives the format).
struct JPEGParser {
    let data: [UInt8]
    let source: String
    let maxPixels: Int
    var pos = 0
    var width = 0, height = 0
    var components: [JPEGComponent] = []
    var hmax = 1, vmax = 1
    var mcusWide = 0, mcusHigh = 0
    /// Dequantisation tables in zigzag order.
    var quant: [[Int]?] = Array(repeating: nil, count: 4)
    var dcTables: [JPEGHuffmanTable?] = Array(repeating: nil, count: 4)
    var acTables: [JPEGHuffmanTable?] = Array(repeating: nil, count: 4)
    var restartInterval = 0
    /// An Adobe APP14 segment's colour transform (0: RGB, 1: YCbCr), if one came.
    var adobeTransform: Int?
    var ended = false

    init(data: [UInt8], source: String, maxPixels: Int) {
        self.data = data; self.source = source; self.maxPixels = maxPixels
    }

    func fail(_ message: String) -> ReelError { .badFile(path: source, message: message) }

    func u16(_ at: Int) -> Int { Int(data[at]) << 8 | Int(data[at + 1]) }

    /// Reads every marker segment and scan up to EOI.
    mutating func parse() throws {
        guard data.count >= 4, data[0] == 0xFF, data[1] == 0xD8 else { throw fail("not a JPEG (no SOI marker)") }
        pos = 2
        while !ended {
            let code = try nextMarker()
            switch code {
            case 0xD9:
                guard !components.isEmpty, components.allSatisfy(\.decoded) else {
                    throw fail(components.isEmpty ? "no image before the end marker" : "a component has no scan")
                }
                ended = true
            case 0xD0...0xD7: throw fail("restart marker outside a scan")
            case 0xD8: throw fail("a second start-of-image marker")
            case 0x01: continue   // TEM: no length
            default:
                guard pos + 2 <= data.count else { throw fail("truncated: marker FF\(hex(code)) has no length") }
                let length = u16(pos)
                guard length >= 2, pos + length <= data.count else {
                    throw fail("truncated: marker FF\(hex(code)) segment of \(length) bytes runs past the end of the data")
                }
                let body = (pos + 2)..<(pos + length)
                pos += length
                try segment(code, body)
            }
        }
    }

    /// The code of the marker at `pos` (fill bytes 0xFF skipped); throws at the end of the data.
    mutating func nextMarker() throws -> UInt8 {
        guard pos < data.count else { throw fail("truncated: the data ends before the end-of-image marker") }
        guard data[pos] == 0xFF else { throw fail("expected a marker at byte \(pos), found \(hex(data[pos]))") }
        while pos < data.count, data[pos] == 0xFF { pos += 1 }
        guard pos < data.count else { throw fail("truncated: the data ends inside a marker") }
        defer { pos += 1 }
        return data[pos]
    }

    mutating func segment(_ code: UInt8, _ body: Range<Int>) throws {
        if let kind = JPEGDecoder.frameKind(code) {
            if let kind { throw fail("\(kind) JPEG is not supported (baseline only)") }
            return try frameHeader(body)
        }
        switch code {
        case 0xC4: try huffmanTables(body)
        case 0xCC: throw fail("arithmetic-coded JPEG is not supported (baseline only)")
        case 0xDB: try quantisationTables(body)
        case 0xDD:
            guard body.count >= 2 else { throw fail("DRI segment too short") }
            restartInterval = u16(body.lowerBound)
        case 0xDA: try scan(body)
        case 0xEE:
            // Adobe APP14: "Adobe", version (2), flags (2 + 2), transform (1).
            if body.count >= 12, Array(data[body.prefix(5)]) == Array("Adobe".utf8) {
                adobeTransform = Int(data[body.lowerBound + 11])
            }
        case 0xDC: throw fail("DNL marker (height defined after the scan) is not supported")
        default: break   // APPn, COM, JPG extensions: skipped
        }
    }

    mutating func frameHeader(_ body: Range<Int>) throws {
        guard components.isEmpty else { throw fail("a second frame header") }
        guard body.count >= 6 else { throw fail("frame header too short") }
        let b = body.lowerBound
        guard data[b] == 8 else { throw fail("\(data[b])-bit JPEG is not supported (8-bit only)") }
        height = u16(b + 1)
        width = u16(b + 3)
        let count = Int(data[b + 5])
        guard width > 0, height > 0 else {
            throw fail("image size \(width)x\(height) (a height of 0 is defined by a DNL marker, not supported)")
        }
        guard width * height <= maxPixels else { throw fail("image of \(width)x\(height) is larger than \(maxPixels) pixels") }
        guard count == 1 || count == 3 else {
            throw fail(count == 4 ? "CMYK JPEG is not supported"
                       : "\(count) components (greyscale or three-component colour only)")
        }
        guard body.count >= 6 + 3 * count else { throw fail("frame header too short for \(count) components") }
        var specs: [(id: UInt8, h: Int, v: Int, q: Int)] = []
        for i in 0..<count {
            let o = b + 6 + 3 * i
            let (h, v, q) = (Int(data[o + 1] >> 4), Int(data[o + 1] & 15), Int(data[o + 2]))
            guard (1...4).contains(h), (1...4).contains(v) else { throw fail("component \(i): sampling factors \(h)x\(v)") }
            guard q < 4 else { throw fail("component \(i): quantisation table \(q)") }
            guard !specs.contains(where: { $0.id == data[o] }) else { throw fail("component id \(data[o]) twice") }
            specs.append((data[o], h, v, q))
        }
        hmax = specs.map(\.h).max()!
        vmax = specs.map(\.v).max()!
        guard specs.allSatisfy({ hmax % $0.h == 0 && vmax % $0.v == 0 }) else {
            throw fail("sampling factors \(specs.map { "\($0.h)x\($0.v)" }) are not integer ratios")
        }
        guard specs.reduce(0, { $0 + $1.h * $1.v }) <= 10 else { throw fail("more than 10 blocks per MCU") }
        mcusWide = (width + 8 * hmax - 1) / (8 * hmax)
        mcusHigh = (height + 8 * vmax - 1) / (8 * vmax)
        components = specs.map { s in
            let (bw, bh) = (mcusWide * s.h, mcusHigh * s.v)
            return JPEGComponent(id: s.id, h: s.h, v: s.v, quantTable: s.q, blocksWide: bw, blocksHigh: bh,
                                 plane: [UInt8](repeating: 0, count: bw * bh * 64))
        }
    }

    mutating func quantisationTables(_ body: Range<Int>) throws {
        var i = body.lowerBound
        while i < body.upperBound {
            let precision = Int(data[i] >> 4), id = Int(data[i] & 15)
            guard precision <= 1, id < 4 else { throw fail("quantisation table \(id) with precision code \(precision)") }
            let size = precision == 0 ? 64 : 128
            guard i + 1 + size <= body.upperBound else { throw fail("quantisation table \(id) truncated") }
            quant[id] = (0..<64).map { k in precision == 0 ? Int(data[i + 1 + k]) : u16(i + 1 + 2 * k) }
            i += 1 + size
        }
    }

    mutating func huffmanTables(_ body: Range<Int>) throws {
        var i = body.lowerBound
        while i < body.upperBound {
            let tableClass = Int(data[i] >> 4), id = Int(data[i] & 15)
            guard tableClass <= 1, id < 4 else { throw fail("Huffman table class \(tableClass) id \(id)") }
            guard i + 17 <= body.upperBound else { throw fail("Huffman table truncated") }
            let counts = Array(data[(i + 1)..<(i + 17)])
            let total = counts.reduce(0) { $0 + Int($1) }
            guard total <= 256, i + 17 + total <= body.upperBound else {
                throw fail("Huffman table of \(total) symbols truncated")
            }
            let table = try JPEGHuffmanTable(counts: counts, symbols: Array(data[(i + 17)..<(i + 17 + total)]))
                .orThrow(fail("Huffman table \(tableClass == 0 ? "DC" : "AC") \(id) has more codes than its lengths allow"))
            if tableClass == 0 { dcTables[id] = table } else { acTables[id] = table }
            i += 17 + total
        }
    }
}

func hex(_ b: UInt8) -> String { String(b, radix: 16, uppercase: true).leftPadded(to: 2) }

extension String {
    fileprivate func leftPadded(to n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}

extension Optional {
    func orThrow(_ error: @autoclosure () -> Error) throws -> Wrapped {
        guard let self else { throw error() }
        return self
    }
}
