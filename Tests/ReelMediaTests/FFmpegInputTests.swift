import Foundation
import ReelCore
@testable import ReelMedia
import Testing

/// Test media made once by ffmpeg itself (lavfi testsrc), in one run; its PNGs use every filter (`-pred mixed`).
private let fixtures: String? = {
    guard testFFmpeg != nil else { return nil }
    let dir = inputTempPath("ffmpeg")
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let src = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10"]
    let png = { (name: String, fmt: String) in
        ["-frames:v", "1", "-pix_fmt", fmt, "-pred", "mixed", "\(dir)/\(name).png"]
    }
    do {
        try runFFmpeg(src + ["-frames:v", "5", "-pix_fmt", "yuv420p", "-c:v", "mpeg4", "-q:v", "2", "\(dir)/clip.mp4"]
            + ["-frames:v", "1", "\(dir)/still.jpg"]
            + png("rgb24", "rgb24") + png("rgba64be", "rgba64be") + png("gray16be", "gray16be") + png("pal8", "pal8")
            + png("monob", "monob") + png("ya8", "ya8") + png("rgb48be", "rgb48be"))
        return dir
    } catch {
        return nil
    }
}()

@Suite(.enabled(if: testFFmpeg != nil, "ffmpeg is not installed"))
struct FFmpegInputTests {
    static var dir: String { fixtures ?? "/nonexistent" }

    /// ffmpeg's own decode of a file's first frame, as RGB24 (through `filter`, when given).
    static func ffmpegRGB(_ path: String, filter: [String] = []) throws -> [UInt8] {
        try runFFmpeg(["-i", path, "-frames:v", "1"] + filter + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
    }

    @Test func readsMP4ThroughFFmpeg() throws {
        let input = try openVideoInput(path: "\(Self.dir)/clip.mp4")
        #expect(input is FFmpegInput)
        #expect(try input.width == 64 && input.height == 48 && input.frameRate == FrameRate(10))
        var frames: [RGBFrames] = []
        while let f = try input.nextFrame() { frames.append(f) }
        #expect(frames.count == 5)
        // Against ffmpeg's own RGB conversion of the same yuv444p frame: only the fixed-point rounding
        // differs (measured: max 1, mean 0.03). Its direct yuv420p -> RGB path upsamples chroma
        // differently (mean 9 levels on testsrc's sharp colour edges), so it is not the reference.
        let reference = try Self.ffmpegRGB("\(Self.dir)/clip.mp4", filter: ["-vf", "format=yuv444p"])
        let diff = zip(frames[0].pixels, reference).map { abs(Int($0) - Int($1)) }
        #expect(reference.count == frames[0].pixels.count && diff.max() ?? 9 <= 1)
        #expect(Double(diff.reduce(0, +)) / Double(diff.count) < 0.1)
        input.close()
        #expect(try input.nextFrame() == nil)
    }

    @Test func jpegIsAOneFrameInput() throws {
        let image = try ImageInput(path: "\(Self.dir)/still.jpg")
        #expect(image.width == 64 && image.height == 48 && image.frameRate == nil)
        #expect(try image.nextFrame() != nil)
        #expect(try image.nextFrame() == nil)
        let fitted = try FittedInput(try openVideoInput(path: "\(Self.dir)/still.jpg"), width: 32, height: 32,
                                     frameRate: try FrameRate(16))
        #expect(try fitted.nextFrame()?.width == 32)
    }

    /// PNGs ffmpeg wrote (dynamic Huffman, its own filter choices) decode as ffmpeg decodes them.
    @Test(arguments: ["rgb24", "pal8", "monob", "gray16be", "rgb48be"])
    func pngsMatchFFmpeg(name: String) throws {
        let path = "\(Self.dir)/\(name).png"
        let input = try openVideoInput(path: path)
        #expect(input is ImageInput)
        let ours = try #require(try input.nextFrame())
        let reference = try Self.ffmpegRGB(path)
        let worst = zip(ours.pixels, reference).map { abs(Int($0) - Int($1)) }.max() ?? 99
        #expect(ours.pixels.count == reference.count && worst <= 1, "\(name): worst \(worst)")
    }

    /// With alpha: ffmpeg drops it (opaque testsrc), we composite over black; equal when opaque.
    @Test(arguments: ["rgba64be", "ya8"])
    func opaqueAlphaPNGs(name: String) throws {
        let path = "\(Self.dir)/\(name).png"
        let ours = try PNGDecoder.decode(path: path)
        let reference = try Self.ffmpegRGB(path)
        let worst = zip(ours.pixels, reference).map { abs(Int($0) - Int($1)) }.max() ?? 99
        #expect(worst <= 1, "\(name): worst \(worst)")
    }

    /// Closing after one frame stops ffmpeg (no hang, no zombie); a live source that sends nothing trips
    /// the stall timeout (a FIFO nobody writes: ffmpeg waits in open()).
    @Test func earlyCloseAndStall() throws {
        let input = try FFmpegInput(path: "\(Self.dir)/clip.mp4")
        #expect(try input.nextFrame() != nil)
        input.close()
        #expect(try input.nextFrame() == nil)
        let fifo = inputTempPath("quiet.y4m.fifo")
        unlink(fifo)
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let start = Date()
        do {
            _ = try FFmpegInput(path: fifo, stallTimeout: 0.3)
            Issue.record("no stall error")
        } catch let ReelError.badFile(path, message) {
            #expect(path == fifo && message.contains("stall timeout"), "\(message)")
        }
        #expect(Date().timeIntervalSince(start) < 2)
    }

    @Test func failuresCarryFFmpegsMessage() throws {
        let garbage = inputTempPath("garbage.mp4")
        try writeFile(garbage, Array("this is not a video".utf8))
        do {
            _ = try openVideoInput(path: garbage)
            Issue.record("opened garbage")
        } catch let ReelError.badFile(path, message) {
            #expect(path == garbage && message.contains("ffmpeg"), "\(message)")
        }
        do {
            _ = try FFmpegInput(path: "\(Self.dir)/clip.mp4", environment: ["PATH": "/nonexistent"])
            Issue.record("ran without ffmpeg")
        } catch let ReelError.library(name, message) {
            #expect(name == "ffmpeg" && message.contains("clip.mp4"))
        }
        #expect(throws: ReelError.self) { try openVideoInput(path: inputTempPath("missing.webm")) }
    }
}

@Suite struct VideoInputKindTests {
    @Test func picksByMagicThenExtension() throws {
        #expect(VideoInputKind(path: "-", leadingBytes: []) == .y4m)
        #expect(VideoInputKind(path: "a.bin", leadingBytes: Array("YUV4MPEG2 W".utf8)) == .y4m)
        #expect(VideoInputKind(path: "a.jpg", leadingBytes: PNGEncoder.signature) == .png)
        #expect(VideoInputKind(path: "a.PNG", leadingBytes: []) == .png)        // a FIFO: the name decides
        #expect(VideoInputKind(path: "a.png", leadingBytes: [0xFF, 0xD8, 0xFF]) == .jpeg)   // a JPEG named .png
        #expect(VideoInputKind(path: "live.y4m", leadingBytes: []) == .y4m)
        #expect(VideoInputKind(path: "clip.mp4", leadingBytes: [0, 0, 0, 0x20]) == .ffmpeg)
        let png = inputTempPath("kind.png")
        try writeFile(png, try PNGEncoder.encode(width: 2, height: 1, rgb: [1, 2, 3, 4, 5, 6][...]))
        let input = try openVideoInput(path: png)
        #expect(input.width == 2 && input.frameRate == nil)
        #expect(try input.nextFrame()?.pixels == [1, 2, 3, 4, 5, 6])
        #expect(try input.nextFrame() == nil)
    }
}
