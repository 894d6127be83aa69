import Foundation
import ReelCore
@testable import ReelMedia

/// A folder for files the input tests write.
func inputTempPath(_ name: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("reel-input-tests-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name).path
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Builds PNG files of any colour type, bit depth, filter and interlacing from samples, independently
/// of `PNGEncoder` (which writes only 8-bit RGB), so the decoder can be checked against known pixels.
struct TestPNG {
    var width: Int, height: Int, bitDepth: Int, colorType: Int
    var interlaced = false
    /// Filter type for every row (0...4), or nil to cycle through all five.
    var filter: Int?
    var palette: [UInt8] = []
    var transparency: [UInt8]?
    /// Stored samples of pixel (x, y), `channels` of them.
    var samples: (Int, Int) -> [Int]

    var channels: Int { [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][colorType]! }

    func bytes() -> [UInt8] {
        var ihdr = PNGEncoder.bigEndian(UInt32(width)) + PNGEncoder.bigEndian(UInt32(height))
        ihdr += [UInt8(bitDepth), UInt8(colorType), 0, 0, interlaced ? 1 : 0]
        var out = PNGEncoder.signature
        Self.chunk("IHDR", ihdr, into: &out)
        if !palette.isEmpty { Self.chunk("PLTE", palette, into: &out) }
        if let transparency { Self.chunk("tRNS", transparency, into: &out) }
        Self.chunk("tEXt", Array("Comment\0ancillary, skipped".utf8), into: &out)
        let z = Deflate.zlib(scanlines())
        // Two IDATs: the decoder must join them.
        Self.chunk("IDAT", Array(z[..<(z.count / 2)]), into: &out)
        Self.chunk("IDAT", Array(z[(z.count / 2)...]), into: &out)
        Self.chunk("IEND", [], into: &out)
        return out
    }

    static func chunk(_ type: String, _ data: [UInt8], into out: inout [UInt8]) {
        out += PNGEncoder.bigEndian(UInt32(data.count))
        out += Array(type.utf8) + data
        out += PNGEncoder.bigEndian(CRC32.checksum(Array(type.utf8) + data))
    }

    /// Filtered rows of every pass.
    func scanlines() -> [UInt8] {
        let grid = interlaced
            ? [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
            : [(0, 0, 1, 1)]
        var out: [UInt8] = []
        var rowCounter = 0
        for (x0, y0, dx, dy) in grid {
            let pw = (width - x0 + dx - 1) / dx, ph = (height - y0 + dy - 1) / dy
            guard pw > 0, ph > 0 else { continue }
            var previous = [UInt8](repeating: 0, count: (pw * channels * bitDepth + 7) / 8)
            for y in 0..<ph {
                let row = pack((0..<pw).flatMap { samples(x0 + $0 * dx, y0 + y * dy) })
                let f = filter ?? rowCounter % 5
                rowCounter += 1
                out.append(UInt8(f))
                out += Self.filtered(row, previous: previous, type: f, step: max(1, channels * bitDepth / 8))
                previous = row
            }
        }
        return out
    }

    func pack(_ s: [Int]) -> [UInt8] {
        switch bitDepth {
        case 8: return s.map { UInt8($0) }
        case 16: return s.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        default:
            var out = [UInt8](repeating: 0, count: (s.count * bitDepth + 7) / 8)
            for (i, v) in s.enumerated() {
                let bit = i * bitDepth
                out[bit / 8] |= UInt8(v << (8 - bitDepth - bit % 8))
            }
            return out
        }
    }

    static func filtered(_ row: [UInt8], previous: [UInt8], type: Int, step: Int) -> [UInt8] {
        (0..<row.count).map { i in
            let a = i >= step ? Int(row[i - step]) : 0, b = Int(previous[i])
            let c = i >= step ? Int(previous[i - step]) : 0
            let p = [0, a, b, (a + b) / 2, PNGEncoder.paeth(a, b, c)][type]
            return UInt8(truncatingIfNeeded: Int(row[i]) - p)
        }
    }
}

/// A deterministic pseudo-random byte sequence (an LCG), for fuzz-like tests.
struct TestBytes: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state
    }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next() >> 33) } }
}

/// ffmpeg on this machine, or nil (tests that need it are skipped).
let testFFmpeg = FFmpegSink.findFFmpeg()

/// Runs ffmpeg with `arguments`; returns its stdout.
@discardableResult
func runFFmpeg(_ arguments: [String]) throws -> [UInt8] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: testFFmpeg ?? "/usr/bin/ffmpeg")
    p.arguments = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y"] + arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitForExit()
    guard p.terminationStatus == 0 else { throw ReelError.library(name: "ffmpeg", message: "\(arguments)") }
    return [UInt8](data)
}

/// A video input over frames in memory, for the fitting tests.
final class MemoryInput: VideoInput {
    let source = "memory"
    let width: Int, height: Int
    let frameRate: FrameRate?
    private var frames: [RGBFrames]
    private(set) var reads = 0

    init(_ frames: [RGBFrames], rate: FrameRate?) {
        self.frames = frames
        width = frames.first?.width ?? 1
        height = frames.first?.height ?? 1
        frameRate = rate
    }

    func nextFrame() throws -> RGBFrames? {
        guard !frames.isEmpty else { return nil }
        reads += 1
        return frames.removeFirst()
    }

    func close() { frames = [] }
}

/// One frame of a single colour.
func solidFrame(width: Int, height: Int, _ rgb: [UInt8]) throws -> RGBFrames {
    try RGBFrames(width: width, height: height, pixels: (0..<(width * height)).flatMap { _ in rgb })
}
