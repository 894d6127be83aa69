import Foundation
import ReelCore
import ReelMedia
import ReelTestSupport
import Testing
@testable import ReelServer

/// A session with `options.codec = "h264"` sends its decoder configuration, then one access unit a frame (the first a
/// keyframe); decoded by ffmpeg, the stream is the video the same session sends as JPEG: each decoded frame is
/// closest to the JPEG frame at its place (the test pattern: every frame differs from its neighbours).
@Suite(.enabled(if: FFmpegSink.findFFmpeg() != nil, "ffmpeg is not installed: H.264 sessions are not tested"))
struct H264SessionTests {
    @Test func h264FramesAreTheVideo() async throws {
        let manager = SessionManager(model: try TestModel.load(), config: TestModel.config { $0.testPattern = true })
        func request(_ codec: FrameCodec) -> SessionRequest {
            SessionRequest(prompt: "a pattern", seed: 4, width: 160, height: 96, fps: 16, seconds: 2, quality: 100,
                           record: false, codec: codec)
        }
        let jpeg = await SessionTests.frames(of: try await manager.create(request(.jpeg), watched: true))
        let created = try await manager.create(request(.h264), watched: true)
        var codec: CodecMessage?
        var frames: [[UInt8]] = []
        var codecs: Set<String> = []
        for await event in created.events! {
            switch event {
            case .codec(let message): codec = message
            case .block(let info, let parts, let endsBlock):
                #expect(codec != nil, "the configuration comes before the first frame")
                frames += parts
                codecs.insert(info.codec)
                if endsBlock { created.session.delivered() }
            case .message, .error: break
            }
            if [.finished, .failed].contains(created.session.state), case .message = event { break }
        }
        let config = try #require(codec)
        #expect(config.codec.hasPrefix("avc1.42"), "Constrained Baseline: \(config.codec)")
        #expect(codecs == ["h264"] && frames.count == jpeg.count && frames.count == 33)
        #expect(frames.allSatisfy { Array($0.prefix(4)) == FrameMessage.h264Magic })
        #expect(frames.first?[14] == 1, "the first frame is a keyframe")
        #expect(frames.enumerated().allSatisfy { i, f in (0..<4).reduce(0) { $0 | Int(f[8 + $1]) << (8 * $1) } == i })

        let decoded = try Self.decode(configuration: [UInt8](try #require(Data(base64Encoded: config.description))),
                                      frames: frames.map { Array($0.dropFirst(FrameMessage.headerBytes)) }, width: 160, height: 96)
        #expect(decoded.count == jpeg.count)
        let references = try jpeg.map { try JPEGDecoder.decode(Array(try #require(FrameMessage.decode($0)).jpeg)).pixels }
        var total = 0.0, worst = 0.0
        for (i, h264) in decoded.enumerated() {
            let errors = references.map { meanAbsoluteDifference(h264, $0) }
            #expect(errors.indices.min { errors[$0] < errors[$1] } == i, "decoded frame \(i) is closest to its own JPEG frame")
            total += errors[i]
            worst = max(worst, errors[i])
        }
        // CRF 23 against JPEG at quality 100, both 4:2:0: measured mean ~1.5 levels; the neighbouring frame ~6+.
        #expect(worst < 4, "mean error \(total / Double(decoded.count)), worst \(worst) levels")
        print("H264SessionTests: \(frames.count) frames, \(frames.reduce(0) { $0 + $1.count }) bytes (JPEG q100: "
              + "\(jpeg.reduce(0) { $0 + $1.count })), mean error \(String(format: "%.2f", total / Double(decoded.count))), "
              + "worst \(String(format: "%.2f", worst)) levels, \(config.codec)")
        await manager.shutdown()
    }

    /// Frames decoded by ffmpeg from the AVCC frames and their avcC: written as Annex B (start codes, the
    /// parameter sets first) and read back as RGB.
    static func decode(configuration c: [UInt8], frames: [[UInt8]], width: Int, height: Int) throws -> [ArraySlice<UInt8>] {
        let startCode: [UInt8] = [0, 0, 0, 1]
        var annexB: [UInt8] = []
        // avcC (ISO/IEC 14496-15 5.3.3.1): version, profile, compatibility, level, 0xFC | (length size - 1),
        // 0xE0 | SPS count, then each SPS as u16be length + bytes, then the PPS count and each PPS likewise.
        var p = 5
        for group in 0..<2 {
            let count = Int(c[p]) & (group == 0 ? 0x1F : 0xFF)
            p += 1
            for _ in 0..<count {
                let n = Int(c[p]) << 8 | Int(c[p + 1])
                annexB += startCode + c[(p + 2)..<(p + 2 + n)]
                p += 2 + n
            }
        }
        let lengthSize = Int(c[4] & 3) + 1
        for frame in frames {
            var q = 0
            while q + lengthSize <= frame.count {
                let n = frame[q..<(q + lengthSize)].reduce(0) { $0 << 8 | Int($1) }
                annexB += startCode + frame[(q + lengthSize)..<(q + lengthSize + n)]
                q += lengthSize + n
            }
        }
        let path = NSTemporaryDirectory() + "reel-h264-\(UUID().uuidString).h264"
        try Data(annexB).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(FFmpegSink.findFFmpeg()))
        process.arguments = ["-hide_banner", "-loglevel", "error", "-nostdin", "-f", "h264", "-i", path,
                             "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let bytes = [UInt8](out.fileHandleForReading.readDataToEndOfFile())
        process.waitForExit()
        let size = width * height * 3
        try #require(bytes.count % size == 0)
        return stride(from: 0, to: bytes.count, by: size).map { bytes[$0..<($0 + size)] }
    }
}
