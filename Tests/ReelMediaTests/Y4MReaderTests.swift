import Foundation
import ReelCore
@testable import ReelMedia
import Testing

@Suite struct Y4MReaderTests {
    static func y4m(_ header: String, frames: [[UInt8]]) -> [UInt8] {
        Array((header + "\n").utf8) + frames.flatMap { Array("FRAME\n".utf8) + $0 }
    }

    static func reader(_ bytes: [UInt8], _ name: String) throws -> Y4MReader {
        let path = inputTempPath(name)
        try writeFile(path, bytes)
        return try Y4MReader(path: path)
    }

    /// Y4MSink -> Y4MReader over a sweep of the RGB cube. The sink's 8-bit forward matrix and the limited
    /// range (219 luma, 225 chroma levels for 256) lose up to ~1.2 levels per sample; the inverse matrix
    /// amplifies chroma error into G and B. Measured over this sweep: max 3, mean 0.46 levels a channel
    /// (the same figures as an exhaustive sweep of every third level).
    @Test func roundTripsY4MSink() throws {
        let path = inputTempPath("round.y4m")
        let sink = try Y4MSink(path: path, fps: 24)
        let w = 64, h = 64
        var px: [UInt8] = []
        for y in 0..<h { for x in 0..<w { px += [UInt8(x * 4), UInt8(y * 4), UInt8((x * 16 + y) % 256)] } }
        let frames = try RGBFrames(width: w, height: h, pixels: px + px.reversed())
        try sink.write(frames)
        try sink.finish()
        let reader = try Y4MReader(path: path)
        #expect(try reader.width == w && reader.height == h && reader.frameRate == FrameRate(24))
        var maxError = 0, total = 0
        for f in 0..<2 {
            let frame = try #require(try reader.nextFrame())
            for (a, b) in zip(frame.pixels, frames.frame(f)) {
                maxError = max(maxError, abs(Int(a) - Int(b)))
                total += abs(Int(a) - Int(b))
            }
        }
        #expect(try reader.nextFrame() == nil)
        #expect(try reader.nextFrame() == nil)   // stays ended
        #expect(maxError <= 3)
        #expect(Double(total) / Double(2 * px.count) < 0.6)
    }

    @Test func chromaLayoutsAndReplication() throws {
        // 4x2, 4:2:0: two chroma samples; left 2x2 block gets the first, right block the second.
        let y: [UInt8] = [16, 235, 126, 126, 16, 235, 126, 126]
        let cb: [UInt8] = [128, 128], cr: [UInt8] = [128, 240]
        let r420 = try Self.reader(Self.y4m("YUV4MPEG2 W4 H2 F25:1 C420mpeg2", frames: [y + cb + cr]), "c420.y4m")
        let f = try #require(try r420.nextFrame())
        #expect(Array(f.pixels[0..<6]) == [0, 0, 0, 255, 255, 255])
        #expect(Array(f.pixels[12..<18]) == [0, 0, 0, 255, 255, 255])   // second row, same chroma
        // The right 2x2 block (Y 126) shares Cr 240: four identical reds.
        let right = [6, 9, 18, 21].map { Array(f.pixels[$0..<($0 + 3)]) }
        #expect(right.allSatisfy { $0 == right[0] } && right[0][0] > 200 && right[0][1] < 100)
        // 4:2:2: chroma per pair of pixels on every row; mono: gray.
        let r422 = try Self.reader(Self.y4m("YUV4MPEG2 W2 H2 C422", frames: [[126, 126, 126, 126, 128, 128, 128, 240]]),
                                   "c422.y4m")
        let g = try #require(try r422.nextFrame())
        #expect(Array(g.pixels[0..<3]) == [128, 128, 128] && g.pixels[6] > 200)
        let mono = try Self.reader(Self.y4m("YUV4MPEG2 W3 H1 Cmono", frames: [[16, 126, 235]]), "mono.y4m")
        #expect(try mono.nextFrame()?.pixels == [0, 0, 0, 128, 128, 128, 255, 255, 255])
        // Odd sizes: 4:2:0 chroma of ceil(W/2) x ceil(H/2).
        let odd = try Self.reader(Self.y4m("YUV4MPEG2 W3 H3 C420jpeg", frames: [[UInt8](repeating: 126, count: 9 + 8)]),
                                  "odd.y4m")
        #expect(odd.header.frameBytes == 17)
        #expect(try odd.nextFrame()?.pixels.count == 27)
        // Full range: Y 0 / 255 are black / white.
        let full = try Self.reader(Self.y4m("YUV4MPEG2 W2 H1 C444 XCOLORRANGE=FULL",
                                            frames: [[0, 255, 128, 128, 128, 128]]), "full.y4m")
        #expect(try full.nextFrame()?.pixels == [0, 0, 0, 255, 255, 255])
    }

    @Test func headerTags() throws {
        let h = try Y4MHeader(line: Array("YUV4MPEG2 W720 H480 F30000:1001 Ip A10:11".utf8), source: "s")
        #expect(h.width == 720 && h.height == 480 && h.chroma == .c420 && !h.fullRange)
        #expect(try h.frameRate == FrameRate(30000, 1001) && h.pixelAspect == [10, 11])
        let unknown = try Y4MHeader(line: Array("YUV4MPEG2 W2 H2 F0:0 A0:0 I? XYSCSS=420JPEG".utf8), source: "s")
        #expect(unknown.frameRate == nil && unknown.pixelAspect == nil)
    }

    @Test(arguments: [
        ("YUV4MPEG2 W4 H4 It", "interlaced"), ("YUV4MPEG2 W4 H4 Ib", "interlaced"),
        ("YUV4MPEG2 W4 H4 Im", "interlaced"),
        ("YUV4MPEG2 W4 H4 C420p10", "not supported"), ("YUV4MPEG2 W4 H4 C444p16", "not supported"),
        ("YUV4MPEG2 W4 H4 C444alpha", "not supported"), ("YUV4MPEG2 W4 H4 C411", "unknown colour"),
        ("YUV4MPEG2 W0 H4", "outside"), ("YUV4MPEG2 W-3 H4", "outside"), ("YUV4MPEG2 W8193 H8193", "outside"),
        ("YUV4MPEG2 W99999999999999999999 H4", "required"), ("YUV4MPEG2 H4", "required"),
        ("YUV4MPEG2 W4 H4 F30:0", "frame rate"), ("YUV4MPEG2 W4 H4 Fx", "frame rate"),
        ("YUV4MPEG2 W4 H4 Q1", "unknown tag"),
        ("RIFF W4 H4", "not a Y4M"),
    ])
    func refusedHeaders(header: String, fragment: String) throws {
        do {
            _ = try Y4MHeader(line: Array(header.utf8), source: "in.y4m")
            Issue.record("accepted \(header)")
        } catch let ReelError.badFile(path, message) {
            #expect(path == "in.y4m")
            #expect(message.contains(fragment), "\(message)")
        }
    }

    @Test func malformedStreamsThrowNamingTheFile() throws {
        let frame = [UInt8](repeating: 128, count: 4 * 4 * 3 / 2)
        let cases: [(String, [UInt8], String)] = [
            ("cut.y4m", Array(Self.y4m("YUV4MPEG2 W4 H4", frames: [frame, frame]).dropLast(5)), "frame 1 truncated"),
            ("marker.y4m", Self.y4m("YUV4MPEG2 W4 H4", frames: [frame]) + Array("FRAMEX\n".utf8), "expected FRAME"),
            ("noline.y4m", Self.y4m("YUV4MPEG2 W4 H4", frames: []) + [UInt8](repeating: 65, count: 5000),
             "longer than"),
        ]
        for (name, bytes, fragment) in cases {
            let reader = try Self.reader(bytes, name)
            do {
                while try reader.nextFrame() != nil {}
                Issue.record("no error for \(name)")
            } catch let ReelError.badFile(path, message) {
                #expect(path.hasSuffix(name) && message.contains(fragment), "\(message)")
            }
        }
        #expect(throws: ReelError.self) { try Self.reader([], "empty.y4m") }
        #expect(throws: ReelError.self) { try Y4MReader(path: "/nonexistent-reel/x.y4m") }
        var rng = TestBytes(state: 3)
        for n in 0..<50 {   // random bytes: an error, never a crash or a hang
            let bytes = n % 2 == 0 ? rng.bytes(100 + n) : Array("YUV4MPEG2 W2 H2\n".utf8) + rng.bytes(n * 3)
            _ = try? Self.reader(bytes, "random.y4m").nextFrame()
        }
    }

    /// `-` reads Y4M from standard input (a pipe put in its place for the test; fd 0 is restored).
    @Test func dashIsStandardInput() throws {
        let pipe = Pipe()
        let saved = dup(0)
        #expect(saved >= 0 && dup2(pipe.fileHandleForReading.fileDescriptor, 0) == 0)
        defer {
            dup2(saved, 0)
            close(saved)
        }
        try pipe.fileHandleForWriting.write(contentsOf: Data(Self.y4m("YUV4MPEG2 W1 H1 F16:1 Cmono", frames: [[235]])))
        try pipe.fileHandleForWriting.close()
        let input = try openVideoInput(path: "-")
        #expect(input.source == "-" && input is Y4MReader)
        #expect(try input.nextFrame()?.pixels == [255, 255, 255])
        #expect(try input.nextFrame() == nil)
    }

    /// A pipe delivers frames as they are written; a writer that goes quiet trips the stall timeout;
    /// closing the pipe is a clean end.
    @Test func pipeStreamingAndStallTimeout() throws {
        let pipe = Pipe()
        let writer = pipe.fileHandleForWriting
        let frame = [UInt8](repeating: 126, count: 4) + [UInt8](repeating: 128, count: 8)   // gray, 4:4:4
        try writer.write(contentsOf: Data(Self.y4m("YUV4MPEG2 W2 H2 F16:1 C444", frames: [frame])))
        let reader = try Y4MReader(handle: pipe.fileHandleForReading, source: "pipe", stallTimeout: 0.2)
        #expect(try reader.nextFrame()?.pixels == [UInt8](repeating: 128, count: 12))
        let start = Date()
        do {
            _ = try reader.nextFrame()
            Issue.record("no stall error")
        } catch let ReelError.badFile(path, message) {
            #expect(path == "pipe" && message.contains("stall timeout"))
        }
        let waited = Date().timeIntervalSince(start)
        #expect(waited >= 0.15 && waited < 2)

        let live = Pipe()
        try live.fileHandleForWriting.write(contentsOf: Data(Array("YUV4MPEG2 W2 H2 C444\n".utf8)))
        let held = try Y4MReader(handle: live.fileHandleForReading, source: "live", stallTimeout: 5)
        let feeder = live.fileHandleForWriting
        Thread.detachNewThread {
            for _ in 0..<3 {
                usleep(20_000)
                try? feeder.write(contentsOf: Data(Array("FRAME\n".utf8) + frame))
            }
            try? feeder.close()
        }
        var count = 0
        while try held.nextFrame() != nil { count += 1 }
        #expect(count == 3)
        #expect(throws: ReelError.self) {
            try Y4MReader(handle: live.fileHandleForReading, source: "x", stallTimeout: 0)
        }
    }
}
