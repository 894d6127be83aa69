import Foundation
import ReelCore
@testable import ReelMedia
import Testing

/// The baseline JPEG decoder against ffmpeg's decode of the same files (`Fixtures/jpeg/make.sh` made them with
/// libjpeg-turbo's cjpeg: every subsampling, greyscale, restart markers with optimised tables, one scan per
/// component, an odd size), its refusals by name, and damaged data: truncated at every byte, bytes flipped,
/// random bytes after a valid header - each must throw, never crash or hang.
@Suite struct JPEGDecoderTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/jpeg").path
    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(fixtures)/\(name)")))
    }

    /// Mean and largest absolute difference per channel value.
    static func difference(_ a: [UInt8], _ b: [UInt8]) -> (mean: Double, max: Int) {
        var sum = 0, largest = 0
        for (x, y) in zip(a, b) { let d = abs(Int(x) - Int(y)); sum += d; largest = max(largest, d) }
        return (Double(sum) / Double(max(a.count, 1)), largest)
    }

    static let decodable = ["444.jpg", "422.jpg", "420.jpg", "440.jpg", "grey.jpg", "restart.jpg", "separate-scans.jpg"]

    /// The decoded planes (before upsampling and colour conversion) against ffmpeg's own, read back at their
    /// native subsampling: entropy decoding, dequantisation and the IDCT. ffmpeg's IDCT is an integer one,
    /// so samples may differ by rounding: at most 2 levels, mean under 0.1.
    @Test(.enabled(if: testFFmpeg != nil, "ffmpeg is not installed"), arguments: [
        ("444.jpg", "yuvj444p"), ("422.jpg", "yuvj422p"), ("420.jpg", "yuvj420p"), ("440.jpg", "yuvj440p"), ("grey.jpg", "gray"),
        ("restart.jpg", "yuvj420p"), ("separate-scans.jpg", "yuvj420p"),
    ])
    func planesMatchFFmpeg(name: String, format: String) throws {
        var parser = JPEGParser(data: try Self.bytes(name), source: name, maxPixels: 1 << 20)
        try parser.parse()
        #expect(parser.width == 61 && parser.height == 37)
        var planes: [UInt8] = []
        for c in parser.components {
            let (fx, fy) = (parser.hmax / c.h, parser.vmax / c.v)
            let (cw, ch) = ((parser.width + fx - 1) / fx, (parser.height + fy - 1) / fy)
            for y in 0..<ch { planes += c.plane[(y * c.blocksWide * 8)..<(y * c.blocksWide * 8 + cw)] }
        }
        let reference = try runFFmpeg(["-i", "\(Self.fixtures)/\(name)", "-f", "rawvideo", "-pix_fmt", format, "-"])
        #expect(planes.count == reference.count)
        let d = Self.difference(planes, reference)
        print("JPEGDecoderTests: \(name) planes against ffmpeg's: mean \(String(format: "%.3f", d.mean)), max \(d.max)")
        #expect(d.mean < 0.1 && d.max <= 2, "\(name): mean \(d.mean), max \(d.max)")
    }

    /// RGB where no upsampling is involved (4:4:4, greyscale) against ffmpeg's RGB: the colour conversion.
    /// (ffmpeg's RGB of subsampled JPEGs goes through swscale's chroma handling, which differs from libjpeg's
    /// by up to 170 levels at this frame's colour edges, so those are checked as planes above.)
    @Test(.enabled(if: testFFmpeg != nil, "ffmpeg is not installed"), arguments: ["444.jpg", "grey.jpg"])
    func rgbMatchesFFmpeg(name: String) throws {
        let image = try JPEGDecoder.decode(path: "\(Self.fixtures)/\(name)")
        #expect(image.width == 61 && image.height == 37 && image.count == 1)
        let reference = try runFFmpeg(["-i", "\(Self.fixtures)/\(name)", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        let d = Self.difference(image.pixels, reference)
        print("JPEGDecoderTests: \(name) RGB against ffmpeg: mean \(String(format: "%.3f", d.mean)), max \(d.max)")
        #expect(d.mean < 0.1 && d.max <= 3, "\(name): mean \(d.mean), max \(d.max)")
    }

    /// 2:1 chroma is upsampled as libjpeg's fancy upsampling: a flat-chroma image keeps its colour exactly,
    /// and a chroma step between two samples is blended 3/4 : 1/4 on each side.
    @Test func upsamplesChromaAtSampleCentres() throws {
        var parser = JPEGParser(data: try Self.bytes("420.jpg"), source: "420.jpg", maxPixels: 1 << 20)
        try parser.parse()
        for c in 1...2 {
            for i in parser.components[c].plane.indices { parser.components[c].plane[i] = 128 }
            // Column 0 of the chroma plane at 100, column 1 at 200: luma pixel 1 is 3/4 of the way to sample 0.
            let stride = parser.components[c].blocksWide * 8
            for y in 0..<(parser.components[c].blocksHigh * 8) { parser.components[c].plane[y * stride] = 100; parser.components[c].plane[y * stride + 1] = 200 }
        }
        for i in parser.components[0].plane.indices { parser.components[0].plane[i] = 128 }
        let image = try parser.pixels()
        // Cb = Cr at x = 0: 100 (clamped edge), x = 1: 125, x = 2: 175, x = 3: 182 (3/4 of 200, 1/4 of sample 2's
        // 128); R = 128 + 1.402 (C - 128).
        let reds = (0..<4).map { Int(image.pixels[3 * $0]) }
        #expect(reds == [89, 124, 194, 204], "\(reds)")
    }

    /// A restart interval's markers reset the DC predictions: dropping them (and DRI) must break the decode.
    @Test func restartMarkersMatter() throws {
        let data = try Self.bytes("restart.jpg")
        let good = try JPEGDecoder.decode(data)
        #expect(data.indices.dropLast().contains { data[$0] == 0xFF && (0xD0...0xD7).contains(data[$0 + 1]) })
        var noMarkers: [UInt8] = []
        var i = 0
        while i < data.count {
            if i + 1 < data.count, data[i] == 0xFF, (0xD0...0xD7).contains(data[i + 1]) { i += 2; continue }
            noMarkers.append(data[i]); i += 1
        }
        let broken = try? JPEGDecoder.decode(noMarkers)
        #expect(broken == nil || broken!.pixels != good.pixels)
    }

    @Test func refusesWhatItDoesNotRead() throws {
        func message(_ bytes: [UInt8]) -> String {
            do { _ = try JPEGDecoder.decode(bytes, source: "x.jpg"); return "decoded" } catch { return "\(error)" }
        }
        #expect(message(try Self.bytes("progressive.jpg")).contains("progressive JPEG is not supported"))
        #expect(JPEGDecoder.unsupportedFeature(try Self.bytes("progressive.jpg")) == "progressive")
        #expect(message(try Self.bytes("arithmetic.jpg")).contains("arithmetic-coded JPEG is not supported"))
        #expect(JPEGDecoder.unsupportedFeature(try Self.bytes("420.jpg")) == nil)
        // The precision byte of SOF0 set to 12.
        var twelve = try Self.bytes("420.jpg")
        let sof = try #require(twelve.indices.first { twelve[$0] == 0xFF && twelve[$0 + 1] == 0xC0 })
        twelve[sof + 4] = 12
        #expect(message(twelve).contains("12-bit JPEG is not supported"))
        #expect(JPEGDecoder.unsupportedFeature(twelve) == "12-bit")
        #expect(message(Array("not a jpeg".utf8)).contains("not a JPEG"))
        #expect(message([]).contains("not a JPEG"))
        // A 60000 x 60000 frame header is refused before anything is allocated.
        var huge = try Self.bytes("420.jpg")
        huge[sof + 5] = 0xEA; huge[sof + 6] = 0x60; huge[sof + 7] = 0xEA; huge[sof + 8] = 0x60
        #expect(message(huge).contains("larger than"))
    }

    /// APPn segments (an EXIF APP1 here) and comments are skipped.
    @Test func skipsApplicationSegments() throws {
        let data = try Self.bytes("420.jpg")
        let exif: [UInt8] = [0xFF, 0xE1, 0x00, 0x10] + Array("Exif\0\0".utf8) + [UInt8](repeating: 0xAB, count: 8)
        let comment: [UInt8] = [0xFF, 0xFE, 0x00, 0x07] + Array("hello".utf8)
        let withSegments = Array(data[0..<2]) + exif + comment + Array(data[2...])
        #expect(try JPEGDecoder.decode(withSegments) == JPEGDecoder.decode(data))
    }

    /// Every truncation throws (the end-of-image marker is required), as does damage: each of many single
    /// bytes flipped either throws or decodes to an image of the header's size.
    @Test func damagedDataThrowsOrDecodesNeverCrashes() throws {
        let data = try Self.bytes("restart.jpg")
        for cut in 0..<data.count {
            #expect(throws: ReelError.self) { _ = try JPEGDecoder.decode(Array(data[0..<cut])) }
        }
        var random = TestBytes(state: 7)
        for _ in 0..<400 {
            var damaged = data
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                damaged[Int.random(in: 2..<data.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            if let image = try? JPEGDecoder.decode(damaged, maxPixels: 1 << 20) { #expect(image.width * image.height <= 1 << 20) }
        }
        // Random bytes after a valid header, and random headers.
        let scanStart = try #require(data.indices.first { data[$0] == 0xFF && data[$0 + 1] == 0xDA })
        for _ in 0..<100 {
            #expect(throws: ReelError.self) { _ = try JPEGDecoder.decode(Array(data[..<(scanStart + 14)]) + random.bytes(300)) }
            _ = try? JPEGDecoder.decode([0xFF, 0xD8] + random.bytes(200))
        }
    }
}
