import ReelCore
import ReelMedia
import ReelIO

/// A baseline JPEG encoder (ITU T.81, JFIF): YCbCr 4:2:0, the Annex K quantization tables scaled
/// by quality as libjpeg does, the AAN float DCT, and the Annex K Huffman tables. It exists so that
/// `reel serve` can send each frame as an image every browser decodes in hardware-friendly code,
/// with no native dependency. Measured (release, one core of the dev VM): see README's serve section.
///
/// Output layout: SOI, APP0 (JFIF 1.01), DQT (luma, chroma), SOF0 (3 components, Y 2x2, Cb/Cr 1x1),
/// DHT (4 tables), SOS, entropy-coded MCUs of 16x16 pixels (4 Y blocks, Cb, Cr), EOI.
public struct JPEGEncoder: Sendable {
    /// Whether this module was compiled with optimization (Package.swift gives ReelServer `-O` even in debug builds:
    /// the encoder runs on every frame a session sends).
    static let isOptimizedBuild = !_isDebugAssertConfiguration()
    public let quality: Int
    /// Divisors per coefficient in natural order: quant * AAN scale factors * 8.
    private let lumaDivisors: [Float]
    private let chromaDivisors: [Float]
    private let lumaTable: [UInt8]     // natural order
    private let chromaTable: [UInt8]

    /// - Parameter quality: 1...100 (libjpeg's scale; 75-85 suits video previews).
    public init(quality: Int = 80) throws {
        guard (1...100).contains(quality) else {
            throw ReelError.invalidArgument(op: "JPEGEncoder", message: "quality must be in 1...100, got \(quality)")
        }
        self.quality = quality
        let scale = quality < 50 ? 5000 / quality : 200 - 2 * quality
        func scaled(_ base: [Int]) -> [UInt8] { base.map { UInt8(min(max(($0 * scale + 50) / 100, 1), 255)) } }
        lumaTable = scaled(Self.baseLuma)
        chromaTable = scaled(Self.baseChroma)
        func divisors(_ table: [UInt8]) -> [Float] {
            (0..<64).map { Float(table[$0]) * Self.aanScale[$0 / 8] * Self.aanScale[$0 % 8] * 8 }
        }
        lumaDivisors = divisors(lumaTable)
        chromaDivisors = divisors(chromaTable)
    }

    /// Encodes frame `index` of `frames`.
    public func encode(_ frames: RGBFrames, frame index: Int) -> [UInt8] {
        frames.pixels.withUnsafeBufferPointer { all in
            encode(rgb: UnsafeBufferPointer(rebasing: all[(index * frames.frameBytes)..<((index + 1) * frames.frameBytes)]),
                   width: frames.width, height: frames.height)
        }
    }

    /// Encodes one interleaved RGB image of `width` x `height` (both positive).
    public func encode(rgb: UnsafeBufferPointer<UInt8>, width: Int, height: Int) -> [UInt8] {
        precondition(width > 0 && height > 0 && rgb.count >= width * height * 3, "JPEGEncoder: bad image size")
        var out = BitWriter(capacity: width * height / 2 + 1024)
        writeHeaders(&out, width: width, height: height)

        let tables = HuffmanTables.standard
        var y = [Float](repeating: 0, count: 256), cb = [Float](repeating: 0, count: 64), cr = [Float](repeating: 0, count: 64)
        var block = [Float](repeating: 0, count: 64)
        var coefficients = [Int32](repeating: 0, count: 64)
        var previousDC: (Int32, Int32, Int32) = (0, 0, 0)
        for my in stride(from: 0, to: height, by: 16) {
            for mx in stride(from: 0, to: width, by: 16) {
                // Colour conversion (JFIF) with edge replication, and 2x2 chroma averaging.
                cb.withUnsafeMutableBufferPointer { cb in cr.withUnsafeMutableBufferPointer { cr in
                    for i in 0..<64 { cb[i] = 0; cr[i] = 0 }
                    for py in 0..<16 {
                        let sy = min(my + py, height - 1)
                        for px in 0..<16 {
                            let sx = min(mx + px, width - 1)
                            let p = (sy * width + sx) * 3
                            let r = Float(rgb[p]), g = Float(rgb[p + 1]), b = Float(rgb[p + 2])
                            y[py * 16 + px] = 0.299 * r + 0.587 * g + 0.114 * b - 128
                            let c = (py / 2) * 8 + px / 2
                            cb[c] += 0.25 * (-0.168736 * r - 0.331264 * g + 0.5 * b)
                            cr[c] += 0.25 * (0.5 * r - 0.418688 * g - 0.081312 * b)
                        }
                    }
                } }
                for (by, bx) in [(0, 0), (0, 8), (8, 0), (8, 8)] {
                    for r in 0..<8 { for c in 0..<8 { block[r * 8 + c] = y[(by + r) * 16 + bx + c] } }
                    quantize(&block, lumaDivisors, into: &coefficients)
                    encodeBlock(coefficients, previous: &previousDC.0, dc: tables.dcLuma, ac: tables.acLuma, &out)
                }
                quantize(&cb, chromaDivisors, into: &coefficients)
                encodeBlock(coefficients, previous: &previousDC.1, dc: tables.dcChroma, ac: tables.acChroma, &out)
                quantize(&cr, chromaDivisors, into: &coefficients)
                encodeBlock(coefficients, previous: &previousDC.2, dc: tables.dcChroma, ac: tables.acChroma, &out)
            }
        }
        out.flushPadding()
        out.bytes += [0xFF, 0xD9]   // EOI
        return out.bytes
    }

    // MARK: - Transform and quantization

    /// Forward DCT of `block` in place (AAN, libjpeg's jfdctflt), then division by the scaled table.
    private func quantize(_ block: inout [Float], _ divisors: [Float], into out: inout [Int32]) {
        block.withUnsafeMutableBufferPointer { d in
            for pass in 0..<2 {
                let step = pass == 0 ? 1 : 8, stride = pass == 0 ? 8 : 1
                for line in 0..<8 {
                    let o = line * stride
                    let d0 = d[o], d1 = d[o + step], d2 = d[o + 2 * step], d3 = d[o + 3 * step]
                    let d4 = d[o + 4 * step], d5 = d[o + 5 * step], d6 = d[o + 6 * step], d7 = d[o + 7 * step]
                    let t0 = d0 + d7, t7 = d0 - d7, t1 = d1 + d6, t6 = d1 - d6
                    let t2 = d2 + d5, t5 = d2 - d5, t3 = d3 + d4, t4 = d3 - d4
                    var t10 = t0 + t3, t13 = t0 - t3, t11 = t1 + t2, t12 = t1 - t2
                    d[o] = t10 + t11
                    d[o + 4 * step] = t10 - t11
                    let z1 = (t12 + t13) * 0.707106781
                    d[o + 2 * step] = t13 + z1
                    d[o + 6 * step] = t13 - z1
                    t10 = t4 + t5; t11 = t5 + t6; t12 = t6 + t7
                    let z5 = (t10 - t12) * 0.382683433
                    let z2 = 0.541196100 * t10 + z5, z4 = 1.306562965 * t12 + z5, z3 = t11 * 0.707106781
                    let z11 = t7 + z3, z13 = t7 - z3
                    d[o + 5 * step] = z13 + z2
                    d[o + 3 * step] = z13 - z2
                    d[o + step] = z11 + z4
                    d[o + 7 * step] = z11 - z4
                }
            }
            for i in 0..<64 { out[i] = Int32((d[i] / divisors[i]).rounded()) }
        }
    }

    // MARK: - Entropy coding

    private func encodeBlock(_ coefficients: [Int32], previous: inout Int32, dc: HuffmanCode, ac: HuffmanCode,
                             _ out: inout BitWriter) {
        let diff = coefficients[0] - previous
        previous = coefficients[0]
        let dcSize = Self.bitLength(diff)
        out.write(dc.codes[dcSize], dc.lengths[dcSize])
        if dcSize > 0 { out.write(Self.valueBits(diff, dcSize), dcSize) }
        var run = 0
        for k in 1..<64 {
            let v = coefficients[Int(Self.zigzag[k])]
            if v == 0 { run += 1; continue }
            while run > 15 { out.write(ac.codes[0xF0], ac.lengths[0xF0]); run -= 16 }   // ZRL
            let size = Self.bitLength(v)
            let symbol = run << 4 | size
            out.write(ac.codes[symbol], ac.lengths[symbol])
            out.write(Self.valueBits(v, size), size)
            run = 0
        }
        if run > 0 { out.write(ac.codes[0], ac.lengths[0]) }   // EOB
    }

    private static func bitLength(_ v: Int32) -> Int { v == 0 ? 0 : 32 - v.magnitude.leadingZeroBitCount }

    /// The low `size` bits of v (positive) or of v - 1 (negative), as T.81 F.1.2.1 codes amplitudes.
    private static func valueBits(_ v: Int32, _ size: Int) -> UInt32 {
        UInt32(bitPattern: v < 0 ? v - 1 : v) & ((1 << UInt32(size)) - 1)
    }

    // MARK: - Headers

    private func writeHeaders(_ out: inout BitWriter, width: Int, height: Int) {
        out.bytes += [0xFF, 0xD8]                                                      // SOI
        out.bytes += [0xFF, 0xE0, 0, 16, 0x4A, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]  // APP0 JFIF
        out.bytes += [0xFF, 0xDB, 0, 132, 0]                                           // DQT luma (id 0)
        out.bytes += Self.zigzag.map { lumaTable[Int($0)] }
        out.bytes.append(1)                                                            // chroma (id 1)
        out.bytes += Self.zigzag.map { chromaTable[Int($0)] }
        out.bytes += [0xFF, 0xC0, 0, 17, 8, UInt8(height >> 8), UInt8(height & 255),   // SOF0
                      UInt8(width >> 8), UInt8(width & 255), 3,
                      1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]
        for (cls, spec) in [(0x00, HuffmanSpec.dcLuma), (0x10, .acLuma), (0x01, .dcChroma), (0x11, .acChroma)] {
            let length = 2 + 1 + 16 + spec.values.count
            out.bytes += [0xFF, 0xC4, UInt8(length >> 8), UInt8(length & 255), UInt8(cls)] + spec.bits + spec.values
        }
        out.bytes += [0xFF, 0xDA, 0, 12, 3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]       // SOS
    }

    // MARK: - Tables (T.81 Annex K)

    static let baseLuma = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
                           14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
                           18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                           49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
    static let baseChroma = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
                             24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99]
        + [Int](repeating: 99, count: 32)
    /// Natural index of the k-th coefficient in zigzag order.
    static let zigzag: [UInt8] = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48,
                                  41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22,
                                  15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63]
    static let aanScale: [Float] = [1.0, 1.387039845, 1.306562965, 1.175875602, 1.0, 0.785694958, 0.541196100, 0.275899379]
}

/// A Huffman table as DHT stores it: code counts per length 1...16, then the symbols.
struct HuffmanSpec {
    let bits: [UInt8]
    let values: [UInt8]

    static let dcLuma = HuffmanSpec(bits: [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], values: Array(0...11))
    static let dcChroma = HuffmanSpec(bits: [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], values: Array(0...11))
    static let acLuma = HuffmanSpec(bits: [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d], values: [
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
        0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
        0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
        0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
        0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
        0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
        0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
        0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
        0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
        0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
        0xf9, 0xfa])
    static let acChroma = HuffmanSpec(bits: [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77], values: [
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
        0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0,
        0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26,
        0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
        0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
        0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
        0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
        0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
        0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
        0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
        0xf9, 0xfa])
}

/// Code and length per symbol (T.81 Annex C: canonical codes in order of length).
struct HuffmanCode: Sendable {
    var codes = [UInt32](repeating: 0, count: 256)
    var lengths = [Int](repeating: 0, count: 256)

    init(_ spec: HuffmanSpec) {
        var code: UInt32 = 0, k = 0
        for length in 1...16 {
            for _ in 0..<Int(spec.bits[length - 1]) {
                codes[Int(spec.values[k])] = code
                lengths[Int(spec.values[k])] = length
                code += 1; k += 1
            }
            code <<= 1
        }
    }
}

struct HuffmanTables: Sendable {
    let dcLuma, acLuma, dcChroma, acChroma: HuffmanCode
    static let standard = HuffmanTables(dcLuma: HuffmanCode(.dcLuma), acLuma: HuffmanCode(.acLuma),
                                        dcChroma: HuffmanCode(.dcChroma), acChroma: HuffmanCode(.acChroma))
}

/// MSB-first bit packing with JPEG's byte stuffing (0xFF is followed by 0x00 in entropy-coded data).
struct BitWriter {
    var bytes: [UInt8] = []
    private var buffer: UInt64 = 0
    private var count = 0

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    @inline(__always) mutating func write(_ bits: UInt32, _ length: Int) {
        buffer = buffer << UInt64(length) | UInt64(bits)
        count += length
        while count >= 8 {
            count -= 8
            let byte = UInt8(truncatingIfNeeded: buffer >> UInt64(count))
            bytes.append(byte)
            if byte == 0xFF { bytes.append(0) }
        }
    }

    /// Pads the last byte with 1 bits (T.81 F.1.2.3).
    mutating func flushPadding() {
        if count > 0 { write((1 << UInt32(8 - count)) - 1, 8 - count) }
    }
}
