import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWebSocket
import HummingbirdWSClient
import Logging
import ReelCore
import ReelMedia
import ReelIO
import Testing
@testable import ReelServer

/// The studio page in a real headless Chromium (Debian's `chromium`, which `.ci/run` installs; the
/// test is skipped where none is found), on the shipped tiny model on the CPU. The page starts a
/// session from its URL ("a red circle ... on a blue background") and switches the prompt to a green
/// square after two seconds of video; the test follows it through the DevTools protocol and takes a
/// screenshot before and after the switch: the canvas must show the red object, then the green one. The server
/// needs an API key, which the page takes from its address (`?key=`) and sends as the WebSocket's key parameter
/// (BrowserVideoToVideoTests runs the page on a server without one).
@Suite struct BrowserTests {
    static func findChromium() -> String? {
        if let path = ProcessInfo.processInfo.environment["REEL_CHROMIUM"], FileManager.default.isExecutableFile(atPath: path) { return path }
        return ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test func pageStartsDrawsAndSwitchesPrompt() async throws {
        guard let chromium = Self.findChromium() else { print("BrowserTests: no chromium; skipped"); return }
        // Real-time pacing as in production: the page's buffer holds about a second of video.
        let key = "browser-key/\(UUID().uuidString)"
        var config = TestModel.config {
            $0.defaultWidth = 128; $0.defaultHeight = 128; $0.playbackLead = .seconds(1); $0.access.apiKey = key
        }
        config.defaultFPS = 16
        let server = try ReelServer(manager: SessionManager(model: try TestModel.tiny(), config: config))
        let app = HTTPAPITests.app(server)
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let profile = NSTemporaryDirectory() + "reel-chromium-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: profile) }
            func query(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text }
            let url = "http://127.0.0.1:\(port)/?key=\(query(key))&prompt=\(query("a red circle stays still on a blue background"))"
                + "&seed=2&autostart=1"
                + "&then=\(query("a green square stays still on a blue background"))&at=2"
            let browser = try DevToolsBrowser(chromium: chromium, profile: profile, url: url)
            defer { browser.close() }
            let endpoint = try await browser.endpoint()
            var config = WebSocketClientConfiguration()
            config.maxFrameSize = 1 << 24
            try await WebSocketClient.connect(url: endpoint, configuration: config, logger: Logger(label: "cdp")) { inbound, outbound, _ in
                let cdp = DevToolsSession(inbound: inbound.messages(maxSize: 1 << 26).makeAsyncIterator(), outbound: outbound)
                guard let session = try await cdp.attachToPage() else { return }
                // Frames of the first prompt drawn (screenshot), then a second of the second prompt (screenshot).
                var stats = JSON.null
                var before: CanvasColours?, switchedAt: Int?
                // Generous: with every test starting at once on 2 cores a fresh-clone CI run drew the first frame after
                // 86 s and frames at ~1 a second, so the switch (after 32 frames) had not reached the screen by 120 s.
                let deadline = ContinuousClock.now + .seconds(300)
                while ContinuousClock.now < deadline {
                    let result = try await cdp.call("Runtime.evaluate", ["expression": "JSON.stringify(window.reelStats || null)",
                                                                         "returnByValue": true], session: session)
                    if let text = result["result"]?["value"]?.string { stats = try JSON.parse(Data(text.utf8)) }
                    let drawn = stats["framesDrawn"]?.int ?? 0, index = stats["promptIndexDrawn"]?.int ?? 0
                    if before == nil, index == 0, drawn >= 12 { before = try await canvasColours(cdp, session, name: "serve-page-before.png") }
                    if index >= 1, switchedAt == nil { switchedAt = drawn }
                    if let switchedAt, drawn >= switchedAt + 24 { break }
                    try await Task.sleep(for: .milliseconds(200))
                }
                let after = try await canvasColours(cdp, session, name: "serve-page.png")
                let address = try await cdp.call("Runtime.evaluate", ["expression": "location.href", "returnByValue": true],
                                                 session: session)
                #expect(address["result"]?["value"]?.string?.contains("key=") == false, "the key is taken out of the address")
                print("BrowserTests: before the switch \(before.map { "\($0)" } ?? "none"), after \(after)")
                let first = try #require(before, "a screenshot of the first prompt's video: \(stats.text)")
                #expect(first.red > 0.01 && first.green < 0.002 && first.blue > 0.5, "a red object on blue: \(first)")
                #expect(after.green > 0.01 && after.red < 0.002 && after.blue > 0.5, "a green object on blue after the switch: \(after)")
                #expect((stats["framesDrawn"]?.int ?? 0) >= 40, "\(stats.text)")
                #expect(stats["promptIndexDrawn"] == 1, "the prompt switch reached the screen: \(stats.text)")
                #expect(stats["errors"] == .array([]))
                #expect(stats["latencyMs"]?.double != nil)
                print("BrowserTests: \(stats.text)")
                if let id = stats["session"]?.string, let s = await server.manager.session(id) {
                    #expect(s.statusMessage().promptSwitches == 1)
                }

            }
        }
        #expect(await eventually { await server.manager.counts.total == 0 }, "closing the page frees its session")
        await server.manager.shutdown()
    }

    /// A page opened without the key on a server that needs one asks for it (a JavaScript prompt, answered through
    /// DevTools), then streams with it; a wrong answer first is asked again.
    @Test func pageAsksForTheKey() async throws {
        guard let chromium = Self.findChromium() else { print("BrowserTests: no chromium; skipped"); return }
        let key = "asked-\(UUID().uuidString)"
        let config = TestModel.config { $0.defaultWidth = 128; $0.defaultHeight = 128; $0.access.apiKey = key }
        let server = try ReelServer(manager: SessionManager(model: try TestModel.tiny(), config: config))
        try await HTTPAPITests.app(server).test(.live) { client in
            let port = try #require(client.port)
            let profile = NSTemporaryDirectory() + "reel-chromium-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: profile) }
            // The page opens on a blank tab and is navigated once the Page domain is on: a page loaded first may
            // open its prompt before Page.enable arrives, and Page.enable then waits behind the open dialog for ever
            // (a fresh-clone CI run hung there until the browser's watchdog ended it).
            let browser = try DevToolsBrowser(chromium: chromium, profile: profile, url: "about:blank")
            defer { browser.close() }
            var wsConfig = WebSocketClientConfiguration()
            wsConfig.maxFrameSize = 1 << 24
            try await WebSocketClient.connect(url: try await browser.endpoint(), configuration: wsConfig,
                                              logger: Logger(label: "cdp")) { inbound, outbound, _ in
                let cdp = DevToolsSession(inbound: inbound.messages(maxSize: 1 << 26).makeAsyncIterator(), outbound: outbound)
                guard let session = try await cdp.attachToPage() else { return }
                _ = try await cdp.call("Page.enable", session: session)
                _ = try await cdp.call("Page.navigate", ["url": .string("http://127.0.0.1:\(port)/?prompt=a%20red%20circle&autostart=1")],
                                       session: session)
                // Answer the page's prompts: a wrong key, then the key (and the key again should it ask more: an
                // evaluation while a prompt is open would never return).
                var answered: [String] = []
                var stats = JSON.null
                let deadline = ContinuousClock.now + .seconds(300)   // a loaded run drew its first frame after ~88 s
                while ContinuousClock.now < deadline, (stats["framesDrawn"]?.int ?? 0) < 12 {
                    let answer = answered.isEmpty ? "wrong" : key
                    if (try? await cdp.call("Page.handleJavaScriptDialog", ["accept": true, "promptText": .string(answer)],
                                            session: session)) != nil {
                        answered.append(answer)
                        continue
                    }
                    // The page's script waits while a prompt is open, and so would an evaluation: none until answered.
                    guard answered.count >= 2 else { try await Task.sleep(for: .milliseconds(100)); continue }
                    let result = try? await cdp.call("Runtime.evaluate", [
                        "expression": "JSON.stringify(window.reelStats || null)", "returnByValue": true], session: session)
                    if let text = result?["result"]?["value"]?.string { stats = try JSON.parse(Data(text.utf8)) }
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(answered == ["wrong", key], "the page asked twice (a wrong key, then the key): \(answered)")
                #expect((stats["framesDrawn"]?.int ?? 0) >= 12 && stats["errors"] == .array([]), "\(stats.text)")
            }
        }
        #expect(server.manager.metrics.value("reel_requests_unauthorized_total") == 2, "the page's first check, the wrong key")
        await server.manager.shutdown()
    }

    /// Fractions of the canvas's pixels in the tiny model's red, green and blue (its palette: red
    /// (220, 40, 40), green (40, 170, 60), blue (40, 80, 220)), from a screenshot of the page.
    struct CanvasColours: CustomStringConvertible {
        var red = 0.0, green = 0.0, blue = 0.0
        var description: String { String(format: "red %.3f green %.3f blue %.3f", red, green, blue) }
    }

    func canvasColours(_ cdp: DevToolsSession, _ session: String, name: String) async throws -> CanvasColours {
        let rectResult = try await cdp.call("Runtime.evaluate", [
            "expression": "JSON.stringify(document.getElementById('video').getBoundingClientRect())", "returnByValue": true,
        ], session: session)
        let rect = try JSON.parse(Data(try #require(rectResult["result"]?["value"]?.string).utf8))
        let shot = try await cdp.call("Page.captureScreenshot", ["format": "png"], session: session)
        let base64 = try #require(shot["data"]?.string)
        let png = try #require(Data(base64Encoded: base64))
        if let dir = ProcessInfo.processInfo.environment["REEL_SCREENSHOT_DIR"] {
            try png.write(to: URL(fileURLWithPath: dir).appendingPathComponent(name))
        }
        let image = try decodePNG(png)
        let (x0, y0) = (Int(rect["x"]?.double ?? 0), Int(rect["y"]?.double ?? 0))
        let (w, h) = (Int(rect["width"]?.double ?? 0), Int(rect["height"]?.double ?? 0))
        #expect(w > 100 && h > 50 && x0 + w <= image.width && y0 + h <= image.height, "canvas \(rect.text) in \(image.width)x\(image.height)")
        var c = CanvasColours(), n = 0.0
        for y in stride(from: y0 + 2, to: min(y0 + h, image.height) - 2, by: 2) {
            for x in stride(from: x0 + 2, to: min(x0 + w, image.width) - 2, by: 2) {
                let p = (y * image.width + x) * 3
                let (r, g, b) = (Int(image.pixels[p]), Int(image.pixels[p + 1]), Int(image.pixels[p + 2]))
                n += 1
                if r > 160 && g < 100 && b < 100 { c.red += 1 }
                if g > 120 && r < 110 && b < 120 { c.green += 1 }
                if b > 160 && r < 110 && g < 140 { c.blue += 1 }
            }
        }
        return CanvasColours(red: c.red / max(n, 1), green: c.green / max(n, 1), blue: c.blue / max(n, 1))
    }

    /// A PNG decoded to RGB through ffmpeg (installed with chromium by `.ci/run`).
    func decodePNG(_ png: Data) throws -> (width: Int, height: Int, pixels: [UInt8]) {
        let ffmpeg = try #require(FFmpegSink.findFFmpeg(), "ffmpeg decodes the screenshot")
        let dir = NSTemporaryDirectory() + "reel-shot-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try png.write(to: URL(fileURLWithPath: dir + "/shot.png"))
        // The size from the IHDR chunk: width and height at bytes 16 and 20, big-endian.
        let bytes = [UInt8](png)
        func be32(_ o: Int) -> Int { (0..<4).reduce(0) { $0 << 8 | Int(bytes[o + $1]) } }
        let (width, height) = (be32(16), be32(20))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ffmpeg)
        p.arguments = ["-hide_banner", "-loglevel", "error", "-y", "-i", dir + "/shot.png", "-f", "rawvideo", "-pix_fmt", "rgb24", dir + "/shot.rgb"]
        try p.run()
        p.waitForExit()
        let pixels = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/shot.rgb")))
        try #require(pixels.count == width * height * 3)
        return (width, height, pixels)
    }
}

/// A headless Chromium with the DevTools protocol on a free port.
final class DevToolsBrowser: @unchecked Sendable {
    let process = Process()
    private let errors = Pipe()
    /// Ends the browser if the test has not closed it by then: a DevTools call that never gets its answer (an
    /// evaluation while a page dialog is open waits for ever) then fails, and the test with it, instead of hanging.
    private let watchdog: DispatchWorkItem

    init(chromium: String, profile: String, url: String, arguments: [String] = [], lifetime: Double = 480) throws {
        process.executableURL = URL(fileURLWithPath: chromium)
        process.arguments = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                             "--remote-debugging-port=0", "--remote-allow-origins=*", "--user-data-dir=\(profile)",
                             "--window-size=1000,1400"] + arguments + [url]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        let pid = process.processIdentifier
        watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + lifetime, execute: watchdog)
    }

    /// The browser's DevTools WebSocket address, which Chromium prints on stderr.
    func endpoint() async throws -> String {
        let handle = errors.fileHandleForReading
        return try await onThread {
            var text = ""
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                // Wait for output at most until the deadline: a browser that hangs silently must not hang the test.
                var wait = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
                guard poll(&wait, 1, Int32(max(0, deadline.timeIntervalSinceNow) * 1000)) > 0 else { break }
                let data = handle.availableData
                if data.isEmpty { break }
                text += String(decoding: data, as: UTF8.self)
                if let range = text.range(of: #"ws://[^\s]+"#, options: .regularExpression) {
                    // Keep draining stderr so that Chromium never blocks on a full pipe.
                    Thread.detachNewThread { while !handle.availableData.isEmpty {} }
                    return String(text[range])
                }
            }
            throw APIError(.internalServerError, "chromium", "no DevTools address from chromium: \(text)")
        }
    }

    func close() {
        watchdog.cancel()
        if process.isRunning { process.terminate() }
        process.waitForExit(timeout: 10)
    }
}

/// Request/response over a DevTools WebSocket (events are skipped).
final class DevToolsSession {
    var inbound: WebSocketInboundMessageStream.AsyncIterator
    let outbound: WebSocketOutboundWriter
    var nextID = 1

    init(inbound: WebSocketInboundMessageStream.AsyncIterator, outbound: WebSocketOutboundWriter) {
        self.inbound = inbound
        self.outbound = outbound
    }

    /// Attaches to the browser's first page target: its session id, nil (with the issue recorded) when there is none.
    func attachToPage() async throws -> String? {
        let targets = try await call("Target.getTargets")
        guard case .array(let infos) = try #require(targets["targetInfos"]),
              let page = infos.first(where: { $0["type"] == "page" })?["targetId"] else {
            Issue.record("no page target: \(targets.text)"); return nil
        }
        let attached = try await call("Target.attachToTarget", ["targetId": page, "flatten": true])
        return try #require(attached["sessionId"]?.string)
    }

    func call(_ method: String, _ params: JSON = [:], session: String? = nil) async throws -> JSON {
        let id = nextID
        nextID += 1
        var message: [String: JSON] = ["id": .int(id), "method": .string(method), "params": params]
        if let session { message["sessionId"] = .string(session) }
        try await outbound.write(.text(JSON.object(message).text))
        while let reply = try await inbound.next() {
            guard case .text(let text) = reply else { continue }
            let json = try JSON.parse(Data(text.utf8))
            guard json["id"]?.int == id else { continue }
            if let error = json["error"] { throw APIError(.internalServerError, "cdp", "\(method): \(error.text)") }
            return json["result"] ?? .null
        }
        throw APIError(.internalServerError, "cdp", "the DevTools socket closed during \(method)")
    }
}
