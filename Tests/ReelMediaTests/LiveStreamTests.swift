import Foundation
import ReelCore
@testable import ReelMedia
import ReelTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct LiveDestinationTests {
    @Test func acceptsTheThreeTransports() throws {
        let rtmp = try LiveDestination(url: "rtmp://127.0.0.1:1935/live/stream")
        #expect(rtmp.transport == .rtmp && rtmp.transport.container == "flv" && rtmp.ffmpegURL == rtmp.url)
        #expect(try LiveDestination(url: "rtmps://a.rtmp.youtube.com/live2/abcd-efgh").transport == .rtmps)
        let srt = try LiveDestination(url: "srt://10.0.0.2:9000?latency=200000")
        #expect(srt.transport.container == "mpegts" && srt.ffmpegURL == "srt://10.0.0.2:9000?latency=200000&linger=2")
        let plainSRT = try LiveDestination(url: "srt://h:1"), udp = try LiveDestination(url: "udp://127.0.0.1:1234")
        #expect(abs(srt.closeHold - 0.65) < 1e-9 && abs(plainSRT.closeHold - 0.49) < 1e-9)
        #expect(rtmp.closeHold == 0 && udp.closeHold == 0)
        #expect(try LiveDestination(url: "udp://127.0.0.1:1234").ffmpegURL == "udp://127.0.0.1:1234?pkt_size=1316&connect=1")
        #expect(try LiveDestination(url: "udp://239.0.0.1:1234?pkt_size=188").ffmpegURL
            == "udp://239.0.0.1:1234?pkt_size=188&connect=1")
    }

    @Test(arguments: [
        ("http://example.com/live", "'http://' is not a live output"),
        ("rtmp://127.0.0.1/live", "application and a stream key"),
        ("rtmp:///live/key", "no host"),
        ("srt://127.0.0.1", "needs a port"),
        ("udp://127.0.0.1:99999", "not in 1...65535"),
        ("udp://127.0.0.1:1234/path", "takes no path"),
    ])
    func refusesWithAReason(url: String, reason: String) {
        do {
            _ = try LiveDestination(url: url)
            Issue.record("\(url) was accepted")
        } catch {
            #expect("\(error)".contains(reason) && "\(error)".contains(url), "\(error)")
        }
    }

    @Test func tellsURLsFromPaths() {
        #expect(LiveDestination.isURL("rtmp://host/app/key") && LiveDestination.isURL("udp://1.2.3.4:5"))
        #expect(!LiveDestination.isURL("out.mp4") && !LiveDestination.isURL("/tmp/frames/") && !LiveDestination.isURL("a b://"))
    }

    @Test func encodesForLiveServers() throws {
        let sink = try LiveStreamSink(destination: try LiveDestination(url: "rtmp://h/app/key"), fps: 30,
                                      options: LiveStreamOptions(bitrateKbps: 1200), executable: "/bin/true")
        let args = sink.arguments(width: 832, height: 480).joined(separator: " ")
        for part in ["-c:v libx264", "-tune zerolatency", "-b:v 1200k", "-maxrate 1200k", "-g 60", "-f flv", "832x480"] {
            #expect(args.contains(part), "\(part) in \(args)")
        }
        #expect(args.hasSuffix("rtmp://h/app/key"))
    }
}

private let ffmpegProtocols: String = {
    guard testFFmpeg != nil, let out = try? runFFmpeg(["-protocols"]) else { return "" }
    return String(decoding: out, as: UTF8.self)
}()

/// Streams to a local ffmpeg listener on loopback (RTMP, SRT, UDP): every frame arrives, as the video sent (each
/// decoded frame closest to the frame sent at its place, within the codec's error); frames leave at the video's
/// rate; a listener killed mid-stream ends the stream with an error naming the address, and ffmpeg is reaped.
@Suite(.enabled(if: testFFmpeg != nil, "ffmpeg is not installed: the live outputs are not tested"))
struct LiveStreamTests {
    static let (width, height, fps) = (160, 96, 30)

    /// A bright square moving 3 pixels a frame over a gradient (no wrap in 45 frames): every frame differs.
    static func frame(_ f: Int) throws -> RGBFrames {
        var px = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let p = (y * width + x) * 3
                let inSquare = x >= 3 * f && x < 3 * f + 24 && y >= 36 && y < 60
                px[p] = inSquare ? 240 : UInt8(x)
                px[p + 1] = inSquare ? 230 : UInt8(y * 2)
                px[p + 2] = inSquare ? 40 : 120
            }
        }
        return try RGBFrames(width: width, height: height, pixels: px)
    }

    static func skipUnlessSupported(_ transport: LiveDestination.Transport) -> Bool {
        guard ffmpegProtocols.contains("  \(transport.rawValue)\n") else {
            print("LiveStreamTests: this ffmpeg has no \(transport.rawValue) protocol; skipped")
            return true
        }
        return false
    }

    /// What one stream to a listener gave: the frames sent and received, and the seconds the writes took.
    struct Streamed: Sendable { var sent: [[UInt8]]; var received: [[UInt8]]; var elapsed: Double }

    /// Streams 45 frames to a listener and reads back what it decoded; blocking, so tests run it off the pool.
    static func stream(_ transport: LiveDestination.Transport) throws -> Streamed {
        let listener = try LoopbackListener(transport)
        defer { listener.stop() }
        let sink = try LiveStreamSink(destination: try LiveDestination(url: listener.url), fps: fps)
        let sent = try (0..<45).map(frame)
        let start = ContinuousClock.now
        for frame in sent { try sink.write(frame) }
        let elapsed = (ContinuousClock.now - start).seconds
        try sink.finish()
        return Streamed(sent: sent.map(\.pixels), received: try listener.frames(width: width, height: height).map(Array.init),
                        elapsed: elapsed)
    }

    @Test(arguments: [LiveDestination.Transport.rtmp, .srt, .udp])
    func framesArriveAsSent(transport: LiveDestination.Transport) async throws {
        if Self.skipUnlessSupported(transport) { return }
        let run = try await onThread { try Self.stream(transport) }
        // Paced: 45 frames at 30 FPS leave over 44 intervals.
        #expect(run.elapsed >= 44.0 / 30 - 0.05, "\(run.elapsed) s for 45 frames at 30 FPS")
        #expect(run.received.count == run.sent.count, "\(run.received.count) frames of \(run.sent.count) arrived over \(transport)")
        var worst = 0.0
        for (i, frame) in run.received.enumerated() {
            let errors = run.sent.map { meanAbsoluteDifference($0, frame) }
            let best = errors.indices.min { errors[$0] < errors[$1] }!
            #expect(best == i, "decoded frame \(i) is closest to sent frame \(best)")
            if i < errors.count { worst = max(worst, errors[i]) }
        }
        // H.264 at 2500 kbit/s on a 160x96 frame with 4:2:0 chroma: measured ~1.5 levels; a wrong frame is ~20.
        #expect(worst < 4, "mean error \(worst) levels")
        print("LiveStreamTests: \(transport.rawValue): \(run.received.count) frames in \(String(format: "%.2f", run.elapsed)) s, "
              + "worst mean error \(String(format: "%.2f", worst))")
    }

    /// What writing on after the listener was killed gave.
    struct Dropped: Sendable {
        var url: String
        var error: String?
        var secondsAfterKill: Double
        var processID: Int32?
        var writeAfterFailed: Bool
    }

    /// Streams to a listener killed after 30 frames, writing on (up to 20 s of video) until a write fails.
    static func streamToDyingListener(_ transport: LiveDestination.Transport) throws -> Dropped {
        let listener = try LoopbackListener(transport)
        defer { listener.stop() }
        let sink = try LiveStreamSink(destination: try LiveDestination(url: listener.url), fps: fps)
        let frames = try (0..<8).map(frame)
        var killedAt = ContinuousClock.now
        var failure: (any Error)?
        for i in 0..<600 {   // 20 s of video: far longer than the error takes
            if i == 30 { listener.kill(); killedAt = .now }
            do { try sink.write(frames[i % frames.count]) } catch { failure = error; break }
        }
        let after = (ContinuousClock.now - killedAt).seconds
        let writeAfterFailed = (try? sink.write(frames[0])) == nil
        try sink.finish()   // already stopped: nothing more to report
        return Dropped(url: listener.url, error: failure.map { "\($0)" }, secondsAfterKill: after,
                       processID: sink.ffmpegProcessID, writeAfterFailed: writeAfterFailed)
    }

    @Test(arguments: [LiveDestination.Transport.rtmp, .srt, .udp])
    func aDroppedConnectionStopsWithAnError(transport: LiveDestination.Transport) async throws {
        if Self.skipUnlessSupported(transport) { return }
        let run = try await onThread { try Self.streamToDyingListener(transport) }
        let error = try #require(run.error, "the stream went on after its listener died")
        #expect(error.contains(run.url) && error.contains("connection"), "\(error)")
        #expect(run.secondsAfterKill < 8, "the error came \(run.secondsAfterKill) s after the listener died")
        let pid = try #require(run.processID)
        #expect(Glibc.kill(pid, 0) == -1 && errno == ESRCH, "ffmpeg \(pid) was reaped")
        #expect(run.writeAfterFailed)
        print("LiveStreamTests: \(transport.rawValue) listener killed: \(error) (after \(String(format: "%.2f", run.secondsAfterKill)) s)")
    }
}

/// An ffmpeg listening on a free loopback port, decoding what it receives to a raw RGB file.
final class LoopbackListener {
    let url: String
    private let process = Process()
    private let output: String

    init(_ transport: LiveDestination.Transport) throws {
        let port = Int.random(in: 20000...60000)
        output = NSTemporaryDirectory() + "reel-listener-\(UUID().uuidString).rgb"
        let input: String
        switch transport {
        case .rtmp, .rtmps:
            url = "rtmp://127.0.0.1:\(port)/live/test"
            input = url
        case .srt:
            url = "srt://127.0.0.1:\(port)"
            // The receiver delivers packets as they come (no timestamp-based delivery), so that its own scheduling
            // under a loaded run matters less. The tail of the video is the sink's to deliver: without its close
            // hold (`LiveDestination.closeHold`) a listener like this one got 43-44 of 45 frames in 4 of 4 loaded runs.
            input = url + "?mode=listener&tsbpd=0"
        case .udp:
            url = "udp://127.0.0.1:\(port)"
            input = url + "?timeout=2000000"   // ends 2 s after the last datagram
        }
        process.executableURL = URL(fileURLWithPath: testFFmpeg!)
        process.arguments = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
            + (transport == .rtmp ? ["-listen", "1"] : []) + ["-i", input]
            + ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", output]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        try waitUntilBound(port: port, tcp: transport == .rtmp)
    }

    /// Polls /proc/net until the listener's socket is bound (a connection attempt would take its one accept).
    private func waitUntilBound(port: Int, tcp: Bool) throws {
        // ffmpeg's UDP input binds every address (00000000), its RTMP and SRT listeners the one named.
        let keys = [String(format: "0100007F:%04X", port), String(format: "00000000:%04X", port)]
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let table = (try? String(contentsOfFile: tcp ? "/proc/net/tcp" : "/proc/net/udp", encoding: .utf8)) ?? ""
            let bound = table.split(separator: "\n").contains { line in
                keys.contains { line.contains($0) } && (!tcp || line.contains(" 0A "))
            }
            if bound { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw ReelError.input("the ffmpeg listener did not bind port \(port)")
    }

    /// Frames received, once the listener has ended (the sender closed; at most 15 s).
    func frames(width: Int, height: Int) throws -> [ArraySlice<UInt8>] {
        let deadline = Date().addingTimeInterval(15)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        stop()
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: output)))
        let size = width * height * 3
        guard bytes.count % size == 0 else { throw ReelError.input("\(bytes.count) bytes is not whole \(width)x\(height) frames") }
        return stride(from: 0, to: bytes.count, by: size).map { bytes[$0..<($0 + size)] }
    }

    func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitForExit()
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitForExit()
    }

    deinit { try? FileManager.default.removeItem(atPath: output) }
}
