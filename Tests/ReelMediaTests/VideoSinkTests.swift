import Foundation
import ReelCore
@testable import ReelMedia
import Testing

private func tempPath(_ name: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("reel-video-tests-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name).path
}

/// A gradient with some structure (so filters and matches are exercised), frame `f` shifted.
private func testFrames(width: Int, height: Int, count: Int) throws -> RGBFrames {
    var px: [UInt8] = []
    for f in 0..<count {
        for y in 0..<height {
            for x in 0..<width {
                px += [UInt8((x * 7 + f * 13) & 0xFF), UInt8((y * 5) & 0xFF), UInt8(((x / 4 + y / 4) % 2) * 200 + f)]
            }
        }
    }
    return try RGBFrames(width: width, height: height, pixels: px)
}

@Suite struct VideoChecksumTests {
    @Test func crc32KnownValues() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
        #expect(CRC32.checksum(Array("IEND".utf8)) == 0xAE42_6082)   // every PNG's last 4 bytes
    }

    @Test func adler32KnownValues() {
        #expect(Adler32.checksum(Array("Wikipedia".utf8)) == 0x11E6_0398)
        #expect(Adler32.checksum([UInt8]()) == 1)
        // Long input crosses the 5552-byte reduction boundary.
        let long = [UInt8](repeating: 0xFF, count: 100_000)
        var a: UInt64 = 1, b: UInt64 = 0
        for v in long { a = (a + UInt64(v)) % 65521; b = (b + a) % 65521 }
        #expect(Adler32.checksum(long) == UInt32(b << 16 | a))
    }
}

@Suite struct DeflateTests {
    @Test(arguments: [0, 1, 2, 3, 100, 5000, 70000])
    func roundTrip(size: Int) throws {
        var data = [UInt8](repeating: 0, count: size)
        var s: UInt32 = 12345
        for i in 0..<size {
            s = s &* 1_103_515_245 &+ 12345
            // Runs and repeats (matches) mixed with noise (literals).
            data[i] = i % 300 < 150 ? UInt8(i % 7) : UInt8(truncatingIfNeeded: s >> 16)
        }
        let z = Deflate.zlib(data)
        #expect(try TestInflate.zlib(z) == data)
    }

    @Test func compressesRepetitiveData() throws {
        let data = [UInt8](repeating: 42, count: 100_000)
        let z = Deflate.zlib(data)
        #expect(z.count < 2_000)
        #expect(try TestInflate.zlib(z) == data)
    }
}

@Suite struct PNGTests {
    /// Parses chunks, checks every CRC, inflates IDAT and undoes the filters.
    static func decode(_ png: [UInt8]) throws -> (width: Int, height: Int, rgb: [UInt8]) {
        #expect(Array(png.prefix(8)) == PNGEncoder.signature)
        var pos = 8
        var width = 0, height = 0, idat: [UInt8] = [], types: [String] = []
        func be32(_ i: Int) -> Int { png[i..<(i + 4)].reduce(0) { $0 << 8 | Int($1) } }
        while pos + 12 <= png.count {
            let len = be32(pos)
            let type = String(decoding: png[(pos + 4)..<(pos + 8)], as: UTF8.self)
            let data = Array(png[(pos + 8)..<(pos + 8 + len)])
            #expect(UInt32(be32(pos + 8 + len)) == CRC32.checksum(Array(png[(pos + 4)..<(pos + 8 + len)])), "CRC of \(type)")
            types.append(type)
            if type == "IHDR" {
                width = data[0..<4].reduce(0) { $0 << 8 | Int($1) }
                height = data[4..<8].reduce(0) { $0 << 8 | Int($1) }
                #expect(Array(data[8...]) == [8, 2, 0, 0, 0])
            }
            if type == "IDAT" { idat += data }
            pos += 12 + len
        }
        #expect(types == ["IHDR", "IDAT", "IEND"])
        #expect(pos == png.count)
        let raw = try TestInflate.zlib(idat)
        let stride = width * 3
        #expect(raw.count == height * (stride + 1))
        var out = [UInt8](repeating: 0, count: height * stride)
        for y in 0..<height {
            let filter = raw[y * (stride + 1)]
            for i in 0..<stride {
                let v = Int(raw[y * (stride + 1) + 1 + i])
                let a = i >= 3 ? Int(out[y * stride + i - 3]) : 0
                let b = y > 0 ? Int(out[(y - 1) * stride + i]) : 0
                let c = i >= 3 && y > 0 ? Int(out[(y - 1) * stride + i - 3]) : 0
                let p: Int
                switch filter {
                case 0: p = 0
                case 1: p = a
                case 2: p = b
                case 3: p = (a + b) / 2
                case 4: p = PNGEncoder.paeth(a, b, c)
                default: throw TestInflate.Failure(description: "bad filter \(filter)")
                }
                out[y * stride + i] = UInt8((v + p) & 0xFF)
            }
        }
        return (width, height, out)
    }

    @Test(arguments: [(1, 1), (7, 5), (40, 24)])
    func encodesDecodablePNG(size: (Int, Int)) throws {
        let frames = try testFrames(width: size.0, height: size.1, count: 1)
        let png = try PNGEncoder.encode(width: size.0, height: size.1, rgb: frames.frame(0))
        let decoded = try Self.decode(png)
        #expect(decoded.width == size.0 && decoded.height == size.1)
        #expect(decoded.rgb == Array(frames.frame(0)))
    }

    @Test func rejectsWrongPixelCount() {
        #expect(throws: ReelError.self) { try PNGEncoder.encode(width: 4, height: 4, rgb: [UInt8](repeating: 0, count: 10)[...]) }
    }

    @Test func sequenceSinkWritesNumberedFiles() throws {
        let dir = tempPath("png-seq")
        try? FileManager.default.removeItem(atPath: dir)
        let sink = try PNGSequenceSink(directory: dir)
        try sink.write(try testFrames(width: 8, height: 6, count: 2))
        try sink.write(try testFrames(width: 8, height: 6, count: 1))
        try sink.finish()
        #expect(sink.framesWritten == 3)
        for i in 0..<3 {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: sink.path(ofFrame: i))))
            #expect(try Self.decode(bytes).width == 8)
        }
        #expect(sink.path(ofFrame: 2).hasSuffix("frame_000002.png"))
        #expect(throws: ReelError.self) { try sink.write(try testFrames(width: 4, height: 6, count: 1)) }
    }
}

@Suite struct Y4MTests {
    @Test func writesHeaderAndFrames() throws {
        let path = tempPath("a.y4m")
        let sink = try Y4MSink(path: path, fps: 16)
        let frames = try testFrames(width: 5, height: 3, count: 2)
        try sink.write(frames)
        try sink.write(try RGBFrames(width: 5, height: 3, pixels: [UInt8](repeating: 255, count: 45)))
        try sink.finish()
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let header = "YUV4MPEG2 W5 H3 F16:1 Ip A1:1 C444 XCOLORRANGE=LIMITED\n"
        #expect(Array(bytes.prefix(header.utf8.count)) == Array(header.utf8))
        let frameSize = 6 + 3 * 15
        #expect(bytes.count == header.utf8.count + 3 * frameSize)
        // White is Y 235, Cb = Cr = 128 in limited range BT.601.
        let last = Array(bytes.suffix(45))
        #expect(last[0..<15].allSatisfy { $0 == 235 })
        #expect(last[15..<45].allSatisfy { $0 == 128 })
        #expect(throws: ReelError.self) { try sink.write(frames) }
    }

    @Test func badPathIsATypedError() {
        #expect(throws: ReelError.self) { try Y4MSink(path: "/nonexistent-folder-reel/x.y4m") }
    }
}

@Suite struct VideoSinkChoiceTests {
    @Test func formatFromPath() {
        #expect(VideoFormat(path: "out.mp4") == .mp4)
        #expect(VideoFormat(path: "out.Y4M") == .y4m)
        #expect(VideoFormat(path: "frames/") == .png)
    }

    @Test func fallsBackToY4MWithoutFFmpeg() throws {
        var notes: [String] = []
        let sink = try VideoSinks.open(path: tempPath("fallback.mp4"), environment: ["PATH": "/nonexistent"]) { notes.append($0) }
        #expect(sink is Y4MSink)
        #expect(sink.destination.hasSuffix("fallback.y4m"))
        #expect(notes.count == 1 && notes[0].contains("ffmpeg"))
        try sink.finish()
    }

    /// An encoder that dies is a typed error naming it, never a crash (SIGPIPE) or a hang.
    @Test func deadEncoderIsATypedError() throws {
        let sink = try FFmpegSink(path: tempPath("dead.mp4"), executable: "/bin/false")
        let frames = try testFrames(width: 64, height: 64, count: 8)   // more than a pipe buffer
        #expect(throws: ReelError.self) {
            for _ in 0..<8 { try sink.write(frames) }
            try sink.finish()
        }
    }

    @Test(.enabled(if: FFmpegSink.findFFmpeg() != nil, "ffmpeg is not installed"))
    func mp4ThroughFFmpeg() throws {
        let path = tempPath("a.mp4")
        try? FileManager.default.removeItem(atPath: path)
        let sink = try VideoSinks.open(path: path, fps: 16)
        #expect(sink is FFmpegSink)
        for _ in 0..<3 { try sink.write(try testFrames(width: 33, height: 17, count: 4)) }   // odd size: padded
        try sink.finish()
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(bytes.count > 100)
        #expect(String(decoding: bytes[4..<8], as: UTF8.self) == "ftyp")
    }
}
