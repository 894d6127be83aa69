import ReelCore

/// The stream header of a YUV4MPEG2 file, parsed and checked.
///
/// Format: one line `YUV4MPEG2` followed by space-separated tags, each a letter and a value, then "\n":
/// `W`width `H`height (required), `F`num:den frame rate (`F0:0` unknown), `A`num:den pixel aspect
/// (`A0:0` unknown), `I`interlacing (`p` progressive, `?` unknown; `t`, `b`, `m` refused), `C`colour
/// space (below; `420jpeg` when absent), `X`anything (extensions; `XCOLORRANGE=FULL` selects full-range
/// YCbCr, the rest are ignored). Each frame is a line `FRAME` (tags after it are ignored) and the planes
/// Y, Cb, Cr, 8 bits a sample, row-major, each plane's rows packed without padding.
///
/// Colour spaces read: `420jpeg`, `420paldv`, `420mpeg2`, `420` (chroma of ceil(W/2) x ceil(H/2); the
/// three sitings differ by under a pixel and are read alike), `422` (ceil(W/2) x H), `444`, `mono`
/// (Y only). Deeper samples (`420p10`, `444p16`, ...) and alpha planes are refused.
public struct Y4MHeader: Sendable, Equatable {
    /// How chroma is subsampled.
    public enum Chroma: String, Sendable {
        case c420, c422, c444, mono
    }

    /// Largest frame area read (8192 x 8192): a header cannot make the reader allocate without bound.
    public static let maxPixels = 8192 * 8192

    public let width: Int
    public let height: Int
    public let frameRate: FrameRate?
    /// Pixel aspect ratio (num, den) when stated; frames are read as they are stored, not stretched.
    public let pixelAspect: [Int]?
    public let chroma: Chroma
    /// True for `XCOLORRANGE=FULL` (0...255 luma), false for the usual limited range (16...235).
    public let fullRange: Bool

    /// Size of one chroma plane (0 x 0 for mono).
    public var chromaSize: (width: Int, height: Int) {
        switch chroma {
        case .c420: ((width + 1) / 2, (height + 1) / 2)
        case .c422: ((width + 1) / 2, height)
        case .c444: (width, height)
        case .mono: (0, 0)
        }
    }

    /// Bytes of one frame's planes (after its `FRAME` line).
    public var frameBytes: Int { width * height + 2 * chromaSize.width * chromaSize.height }

    /// Parses the header line (without its "\n"); errors name `source`.
    public init(line: [UInt8], source: String) throws {
        func fail(_ message: String) -> ReelError { .badFile(path: source, message: "Y4M header: " + message) }
        let text = String(decoding: line, as: UTF8.self)
        var tags = text.split(separator: " ", omittingEmptySubsequences: true)
        guard tags.first == "YUV4MPEG2" else { throw fail("does not start with YUV4MPEG2: not a Y4M file") }
        tags.removeFirst()
        var width: Int?, height: Int?, rate: FrameRate?, aspect: [Int]?
        var chroma = Chroma.c420, fullRange = false
        for tag in tags {
            let value = String(tag.dropFirst())
            switch tag.first {
            case "W": width = Int(value)
            case "H": height = Int(value)
            case "F":
                guard let r = Self.ratio(value) else { throw fail("bad frame rate F\(value)") }
                rate = r == [0, 0] ? nil : try? FrameRate(r[0], r[1])
                if r != [0, 0], rate == nil { throw fail("bad frame rate F\(value)") }
            case "A":
                guard let r = Self.ratio(value) else { throw fail("bad pixel aspect A\(value)") }
                aspect = r == [0, 0] ? nil : r
            case "I":
                switch value {
                case "p", "?": break
                case "t", "b", "m":
                    throw fail("interlaced video (I\(value)) is not supported; deinterlace it first (ffmpeg -vf yadif)")
                default: throw fail("unknown interlacing I\(value)")
                }
            case "C":
                switch value {
                case "420jpeg", "420paldv", "420mpeg2", "420": chroma = .c420
                case "422": chroma = .c422
                case "444": chroma = .c444
                case "mono": chroma = .mono
                default:
                    if value.contains("p") || value.hasSuffix("alpha") {
                        throw fail("colour space C\(value) is not supported (8-bit 420, 422, 444 and mono only; "
                            + "convert with ffmpeg -pix_fmt yuv444p)")
                    }
                    throw fail("unknown colour space C\(value)")
                }
            case "X":
                if value.uppercased() == "COLORRANGE=FULL" { fullRange = true }
            default:
                throw fail("unknown tag \(tag.prefix(16))")
            }
        }
        guard let width, let height else { throw fail("W and H are required") }
        guard width > 0, height > 0, width <= Self.maxPixels, height <= Self.maxPixels,
              width * height <= Self.maxPixels else {
            throw fail("frame size \(width)x\(height) is outside 1...8192x8192")
        }
        self.width = width
        self.height = height
        frameRate = rate
        pixelAspect = aspect
        self.chroma = chroma
        self.fullRange = fullRange
    }

    /// "num:den" as two non-negative integers.
    private static func ratio(_ s: String) -> [Int]? {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let n = Int(parts[0]), let d = Int(parts[1]), n >= 0, d >= 0 else { return nil }
        return [n, d]
    }
}
