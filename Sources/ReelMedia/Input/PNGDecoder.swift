import Foundation
import ReelCore

/// Decodes PNG images (ISO/IEC 15948) to RGB8, with Reel's own inflater (`Inflate`).
///
/// File layout: the 8-byte signature, then chunks of `length (4 bytes, big-endian) | type (4 ASCII
/// letters) | data | CRC-32 of type and data`. `IHDR` (first; width, height, bit depth, colour type,
/// compression 0, filter 0, interlace 0 or 1), `PLTE` (palette, needed by colour type 3), `tRNS`
/// (transparency), one or more `IDAT` (together one zlib stream of the filtered scanlines), `IEND`.
/// Other ancillary chunks (lowercase first letter) are skipped; unknown critical chunks are refused.
///
/// Read: colour types 0 (gray: 1/2/4/8/16 bits), 2 (RGB: 8/16), 3 (palette: 1/2/4/8), 4 (gray + alpha:
/// 8/16), 6 (RGBA: 8/16); the five row filters; Adam7 interlacing. Every CRC is checked, and the zlib
/// stream's Adler-32. Samples deeper than 8 bits are rounded to 8 (`v * 255 / 65535`); gray below 8 bits is
/// scaled to fill 0...255. Alpha (an alpha channel or `tRNS`) is composited over black: `c * a / 255`,
/// rounded (a conditioning frame has no transparency; black matches the padding the model sees elsewhere).
/// Gamma and colour-profile chunks are ignored: samples are taken as sRGB.
public enum PNGDecoder {
    /// Largest image decoded (8192 x 8192 pixels), so a header cannot make the decoder allocate without bound.
    public static let maxPixels = 8192 * 8192

    /// The image in the PNG file at `path`, as one RGB frame.
    public static func decode(path: String) throws -> RGBFrames {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ReelError.badFile(path: path, message: "cannot read: \(error.localizedDescription)")
        }
        return try decode([UInt8](data), source: path)
    }

    /// The image in `bytes` (a whole PNG file), as one RGB frame; errors name `source`.
    public static func decode(_ bytes: [UInt8], source: String) throws -> RGBFrames {
        func fail(_ message: String) -> ReelError { .badFile(path: source, message: "PNG: " + message) }
        guard bytes.count >= 8, Array(bytes[0..<8]) == PNGEncoder.signature else {
            throw fail("no PNG signature: not a PNG file")
        }
        var header: PNGHeader?
        var palette: [UInt8] = [], transparency: [UInt8] = [], idat: [UInt8] = []
        var pos = 8, ended = false
        while !ended {
            guard pos + 8 <= bytes.count else { throw fail("truncated: the file ends before IEND") }
            let length = be32(bytes, pos)
            let typeBytes = Array(bytes[(pos + 4)..<(pos + 8)])
            let type = String(decoding: typeBytes, as: UTF8.self)
            guard typeBytes.allSatisfy({ (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }) else {
                throw fail("corrupt chunk type at byte \(pos)")
            }
            guard length <= 0x7FFF_FFFF, pos + 12 + length <= bytes.count else {
                throw fail("truncated: chunk \(type) of \(length) bytes runs past the end of the file")
            }
            let data = bytes[(pos + 8)..<(pos + 8 + length)]
            var crc = CRC32()
            crc.update(typeBytes)
            crc.update(data)
            guard crc.value == UInt32(be32(bytes, pos + 8 + length)) else {
                throw fail("CRC mismatch in chunk \(type)")
            }
            guard header != nil || type == "IHDR" else { throw fail("the first chunk is \(type), not IHDR") }
            switch type {
            case "IHDR":
                guard header == nil else { throw fail("second IHDR") }
                header = try PNGHeader(Array(data), fail: fail)
            case "PLTE":
                guard length % 3 == 0, length > 0, length <= 768 else { throw fail("palette of \(length) bytes") }
                palette = Array(data)
            case "tRNS": transparency = Array(data)
            case "IDAT": idat += data
            case "IEND": ended = true
            default:
                guard typeBytes[0] & 0x20 != 0 else { throw fail("unknown critical chunk \(type)") }
            }
            pos += 12 + length
        }
        guard let header else { throw fail("no IHDR") }
        guard header.colorType != 3 || !palette.isEmpty else { throw fail("colour type 3 without a palette") }
        guard header.colorType != 3 || palette.count / 3 <= 1 << header.bitDepth else {
            throw fail("palette of \(palette.count / 3) entries for \(header.bitDepth)-bit indices")
        }
        let raw: [UInt8]
        do { raw = try Inflate.zlib(idat, limit: header.rawBytes) } catch {
            throw fail("image data: \(error)")
        }
        guard raw.count == header.rawBytes else {
            throw fail("image data holds \(raw.count) bytes, the header needs \(header.rawBytes)")
        }
        let rgb = try PNGPixels(header: header, palette: palette, transparency: transparency, fail: fail).rgb(raw)
        return try RGBFrames(width: header.width, height: header.height, pixels: rgb)
    }

    static func be32(_ b: [UInt8], _ i: Int) -> Int {
        Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3])
    }
}

/// The IHDR chunk, checked against the combinations the PNG standard allows.
struct PNGHeader {
    let width: Int, height: Int, bitDepth: Int, colorType: Int, interlaced: Bool

    init(_ d: [UInt8], fail: (String) -> ReelError) throws {
        guard d.count == 13 else { throw fail("IHDR of \(d.count) bytes") }
        width = PNGDecoder.be32(d, 0)
        height = PNGDecoder.be32(d, 4)
        bitDepth = Int(d[8])
        colorType = Int(d[9])
        guard width > 0, height > 0, width <= PNGDecoder.maxPixels, height <= PNGDecoder.maxPixels,
              width * height <= PNGDecoder.maxPixels else {
            throw fail("image size \(width)x\(height) is outside 1...8192x8192")
        }
        let allowed: [Int: [Int]] = [0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16]]
        guard let depths = allowed[colorType] else { throw fail("invalid colour type \(colorType)") }
        guard depths.contains(bitDepth) else {
            throw fail("bit depth \(bitDepth) is invalid for colour type \(colorType)")
        }
        guard d[10] == 0, d[11] == 0 else { throw fail("unknown compression \(d[10]) or filter method \(d[11])") }
        guard d[12] <= 1 else { throw fail("unknown interlace method \(d[12])") }
        interlaced = d[12] == 1
    }

    /// Samples per pixel.
    var channels: Int { [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][colorType] ?? 1 }
    var bitsPerPixel: Int { channels * bitDepth }
    /// The byte distance the filters look back (1 for pixels smaller than a byte).
    var filterStep: Int { max(1, bitsPerPixel / 8) }

    /// Bytes of one filtered row of `w` pixels, without its filter-type byte.
    func rowBytes(_ w: Int) -> Int { (w * bitsPerPixel + 7) / 8 }

    /// The sub-images stored: the whole image, or Adam7's seven passes (empty passes have no rows).
    var passes: [(x0: Int, y0: Int, dx: Int, dy: Int, width: Int, height: Int)] {
        let grid = interlaced
            ? [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
            : [(0, 0, 1, 1)]
        return grid.map { g in
            (g.0, g.1, g.2, g.3, (width - g.0 + g.2 - 1) / g.2, (height - g.1 + g.3 - 1) / g.3)
        }
    }

    /// Bytes of the decompressed image data: every non-empty pass's rows, each with its filter byte.
    var rawBytes: Int {
        passes.reduce(0) { sum, p in p.width == 0 || p.height == 0 ? sum : sum + p.height * (rowBytes(p.width) + 1) }
    }
}
