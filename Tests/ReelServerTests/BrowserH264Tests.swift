import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWebSocket
import HummingbirdWSClient
import Logging
import ReelCore
import ReelMedia
import Testing
@testable import ReelServer

/// The studio page receiving H.264 (`?codec=h264`): headless Chromium decodes it with WebCodecs and draws the
/// tiny model's video (a red object on blue) on the canvas. With `REEL_STREAM_BENCH=SECONDS`, `streamBench` measures
/// JPEG against H.264 at 832x480 and 30 FPS on `reel serve --test-pattern`'s frames (docs/streaming.md).
@Suite(.enabled(if: BrowserTests.findChromium() != nil && FFmpegSink.findFFmpeg() != nil,
                "needs chromium and ffmpeg"))
struct BrowserH264Tests {
    @Test func pageDecodesAndDrawsH264() async throws {
        let config = TestModel.config { $0.defaultWidth = 128; $0.defaultHeight = 128; $0.playbackLead = .seconds(1) }
        let server = try ReelServer(manager: SessionManager(model: try TestModel.tiny(), config: config))
        let prompt = "a red circle stays still on a blue background".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        try await Self.withPage(server, path: "/?prompt=\(prompt)&seed=2&autostart=1&codec=h264") { cdp, session in
            var stats = JSON.null
            let deadline = ContinuousClock.now + .seconds(300)   // a loaded run drew its first frame after ~96 s
            while ContinuousClock.now < deadline, (stats["framesDrawn"]?.int ?? 0) < 24 {
                try await Task.sleep(for: .milliseconds(200))
                stats = try await Self.stats(cdp, session)
            }
            let colours = try await BrowserTests().canvasColours(cdp, session, name: "serve-page-h264.png")
            print("BrowserH264Tests: \(colours); \(stats.text.prefix(400))")
            #expect(stats["codec"]?.string == "h264", "the page asked for H.264 and kept it: \(stats.text.prefix(400))")
            #expect((stats["framesDrawn"]?.int ?? 0) >= 24 && stats["errors"] == .array([]), "\(stats.text.prefix(400))")
            #expect(colours.red > 0.01 && colours.green < 0.002 && colours.blue > 0.5, "a red object on blue: \(colours)")
            if case .array(let glass) = stats["glassMs"] { #expect(!glass.isEmpty, "glass-to-glass measured") }
        }
        #expect(server.manager.metrics.value("reel_frames_sent_total") >= 24)
        await server.manager.shutdown()
    }

    /// JPEG against H.264 at 832x480, 30 FPS, on the test pattern: bit rate and glass-to-glass latency as the page
    /// measures them. Off unless `REEL_STREAM_BENCH` gives the seconds to stream each.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["REEL_STREAM_BENCH"] != nil, "REEL_STREAM_BENCH=SECONDS runs it"))
    func streamBench() async throws {
        let seconds = Double(ProcessInfo.processInfo.environment["REEL_STREAM_BENCH"] ?? "") ?? 10
        let config = TestModel.config {
            $0.defaultWidth = 832; $0.defaultHeight = 480; $0.defaultFPS = 30; $0.testPattern = true
            $0.playbackLead = .seconds(1)
        }
        let server = try ReelServer(manager: SessionManager(model: try TestModel.tiny(), config: config))
        let rows = Rows()
        for codec in ["jpeg", "h264"] {
            try await Self.withPage(server, path: "/?prompt=pattern&autostart=1&codec=\(codec)") { cdp, session in
                try await Task.sleep(for: .seconds(seconds))
                let stats = try await Self.stats(cdp, session)
                let frames = stats["framesReceived"]?.int ?? 0, bytes = stats["bytesReceived"]?.double ?? 0
                let span = ((stats["lastFrameAt"]?.double ?? 0) - (stats["firstFrameAt"]?.double ?? 0)) / 1000
                func values(_ key: String) -> [Double] {
                    // The first second (the encoder and the page starting) is left out.
                    guard case .array(let list) = stats[key] else { return [] }
                    return list.compactMap(\.double).dropFirst(30).sorted()
                }
                func percentile(_ v: [Double], _ p: Double) -> Double { v.isEmpty ? .nan : v[min(v.count - 1, Int(p * Double(v.count)))] }
                let glass = values("glassMs"), ready = values("readyMs")
                #expect(stats["codec"]?.string == codec && stats["errors"] == .array([]), "\(stats.text.prefix(300))")
                rows.add(String(format: "| %@ | %d | %.1f | %.0f | %.1f | %.0f / %.0f | %.0f / %.0f |", codec, frames,
                                   Double(frames - 1) / max(span, 1e-9), bytes / Double(max(frames, 1)) / 1000,
                                   bytes * 8 / max(span, 1e-9) / 1e6, percentile(ready, 0.5), percentile(ready, 0.9),
                                   percentile(glass, 0.5), percentile(glass, 0.9)))
            }
            #expect(await eventually { await server.manager.counts.total == 0 })
        }
        print("""
            BrowserH264Tests.streamBench: 832x480 at 30 FPS, test pattern, \(Int(seconds)) s each
            | stream | frames | FPS received | KB/frame | Mbit/s | made -> decoded ms (p50 / p90) | made -> drawn ms (p50 / p90) |
            | --- | --- | --- | --- | --- | --- | --- |
            \(rows.lines.joined(separator: "\n"))
            """)
        await server.manager.shutdown()
    }

    static func stats(_ cdp: DevToolsSession, _ session: String) async throws -> JSON {
        let result = try await cdp.call("Runtime.evaluate", ["expression": "JSON.stringify(window.reelStats || null)",
                                                             "returnByValue": true], session: session)
        guard let text = result["result"]?["value"]?.string else { return .null }
        return try JSON.parse(Data(text.utf8))
    }

    /// Runs `body` with the page at `path` open in headless Chromium, attached through DevTools.
    static func withPage(_ server: ReelServer, path: String,
                         _ body: @escaping @Sendable (DevToolsSession, String) async throws -> Void) async throws {
        let chromium = try #require(BrowserTests.findChromium())
        try await HTTPAPITests.app(server).test(.live) { client in
            let port = try #require(client.port)
            let profile = NSTemporaryDirectory() + "reel-chromium-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: profile) }
            let browser = try DevToolsBrowser(chromium: chromium, profile: profile, url: "http://127.0.0.1:\(port)\(path)")
            defer { browser.close() }
            var config = WebSocketClientConfiguration()
            config.maxFrameSize = 1 << 24
            try await WebSocketClient.connect(url: try await browser.endpoint(), configuration: config,
                                              logger: Logger(label: "cdp")) { inbound, outbound, _ in
                let cdp = DevToolsSession(inbound: inbound.messages(maxSize: 1 << 26).makeAsyncIterator(), outbound: outbound)
                guard let session = try await cdp.attachToPage() else { return }
                try await body(cdp, session)
            }
        }
    }
}

/// Table rows written from a page's closure.
private final class Rows: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    var lines: [String] { lock.withLock { list } }
    func add(_ line: String) { lock.withLock { list.append(line) } }
}
