import Foundation
import ReelCore

/// Decodes baseline JPEG (ITU-T T.81: sequential DCT, Huffman coding, 8-bit samples) to RGB8: what browsers'
/// `canvas.toBlob("image/jpeg")`, cameras and Reel's own `JPEGEncoder` make.
///
/// Format: markers (0xFF, code), each but SOI/EOI/RSTn followed by a big-endian u16 length that counts itself.
///
///     SOI  FFD8           first
///     APPn FFE0-FFEF      skipped (JFIF, EXIF, ICC), except Adobe APP14, whose transform 0 marks RGB components
///     COM  FFFE           skipped
///     DQT  FFDB           quantisation tables: Pq (0: 8-bit, 1: 16-bit) Tq (0-3), 64 values in zigzag order
///     SOF0/1 FFC0/FFC1    precision (8), height, width, components: id, H/V sampling factors (1-4), table
///     DHT  FFC4           Huffman tables: class (0 DC, 1 AC), id (0-3), 16 code counts per length, symbols
///     DRI  FFDD           restart interval in MCUs (0: none)
///     SOS  FFDA           a scan: its components with DC/AC tables, Ss 0, Se 63, Ah/Al 0; then entropy-coded
///                         data, 0xFF stuffed as FF00, an RSTn (FFD0-FFD7) marker every restart interval
///     EOI  FFD9           last
///
/// One component is greyscale; three are YCbCr (JFIF, full range) unless marked RGB. Subsampled chroma (4:2:2,
/// 4:2:0, any integer ratio) is upsampled as libjpeg's "fancy" upsampling does: bilinear at sample centres,
/// edges clamped. Progressive, lossless, hierarchical, arithmetic-coded, 12-bit and CMYK files are refused by
/// name (`JPEGDecoder.isSupported` tells before decoding; callers with ffmpeg can hand those to it). Malformed,
/// truncated or hostile data throws `ReelError.badFile`: every length is checked against the data, the image
/// size against `maxPixels` before anything is allocated, and every loop advances through the data or is
/// bounded by the MCU count.
public enum JPEGDecoder {
    /// Whether this module was compiled with optimization (Package.swift gives ReelMedia `-O` even in debug builds).
    static let isOptimizedBuild = !_isDebugAssertConfiguration()
    /// Largest width * height decoded by default (a 4096 x 4096 image).
    public static let defaultMaxPixels = 4096 * 4096

    /// The image in `bytes` (one frame). `source` names it in errors.
    public static func decode(_ bytes: [UInt8], source: String = "JPEG",
                              maxPixels: Int = defaultMaxPixels) throws -> RGBFrames {
        var parser = JPEGParser(data: bytes, source: source, maxPixels: maxPixels)
        try parser.parse()
        return try parser.pixels()
    }

    /// The JPEG file at `path`.
    public static func decode(path: String, maxPixels: Int = defaultMaxPixels) throws -> RGBFrames {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReelError.badFile(path: path, message: "cannot read")
        }
        return try decode([UInt8](data), source: path, maxPixels: maxPixels)
    }

    /// Whether `bytes` start with the JPEG signature (SOI and a marker).
    public static func hasSignature(_ bytes: some Collection<UInt8>) -> Bool {
        Array(bytes.prefix(3)) == [0xFF, 0xD8, 0xFF]
    }

    /// Why a JPEG is outside what this decoder reads (its frame type: "progressive", "arithmetic-coded", ...,
    /// or "12-bit"), nil when it is baseline or extended-sequential 8-bit, or not JPEG at all. Reads only the
    /// marker segments before the first scan.
    public static func unsupportedFeature(_ bytes: [UInt8]) -> String? {
        var i = 2
        while i + 4 <= bytes.count, bytes[i] == 0xFF {
            let code = bytes[i + 1]
            if code == 0xFF { i += 1; continue }
            let length = Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            if let kind = frameKind(code) {
                if kind != nil { return kind }
                if i + 4 < bytes.count, bytes[i + 4] != 8 { return "\(bytes[i + 4])-bit" }
                return nil
            }
            if code == 0xDA || length < 2 { return nil }
            i += 2 + length
        }
        return nil
    }

    /// For a SOFn code: nil inside when it is a frame type this decoder reads, its name otherwise; nil outside
    /// for codes that are not SOFn (DHT C4, JPG C8 and DAC CC share the range).
    static func frameKind(_ code: UInt8) -> String?? {
        switch code {
        case 0xC0, 0xC1: return .some(nil)
        case 0xC2: return "progressive"
        case 0xC3: return "lossless"
        case 0xC5, 0xC6, 0xC7: return "hierarchical"
        case 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF: return "arithmetic-coded"
        default: return nil
        }
    }
}
