import Foundation
import HummingbirdTesting
import HummingbirdWSClient
import Logging
import ReelCore
import ReelEval
import ReelMedia
import Testing
@testable import ReelServer

/// The studio's inputs in a real headless Chromium, on the shipped tiny model (with its encoder) on the CPU: the
/// camera (video-to-video) and an image file (image-to-video, `imageFileOpensTheVideo`).
///
/// Chromium's fake camera plays a Y4M of a drawn scene (a red circle bouncing left and right slowly on blue,
/// starting away from the centre); the page sends it to the server for video-to-video with a prompt of another
/// colour (green). A probe injected before the page loads measures, for every frame the page sends and every
/// frame it draws, where the object is (the centroid of the pixels far from the background's blue) and its
/// mean colour; the page keeps few enough frames in flight that the server drops none, so the k-th frame drawn
/// answers the k-th frame sent.
///
/// Restyling means: the output's object where the input's is (centroids within 0.08 of the frame, 10 pixels at
/// 128, in at least half the frames, median within 0.08) and in the prompt's colour (nearest palette colour
/// green, 80%). `REEL_BROWSER_V2V_NOISE` (default 0.6, the shipped model's) and `REEL_BROWSER_V2V_STEPS`
/// (default 2) set the session's noise scale and steps.
@Suite struct BrowserVideoToVideoTests {
    static let frameSize = 256, cameraFrames = 160, fps = 16
    static let scene = Scene(object: SceneObject(shape: .circle, colour: .red, motion: .bouncesLeftRight, speed: .slowly),
                             background: .plain(.blue))
    static let prompt = "a green circle bounces left and right slowly on a blue background"

    /// The scene as a 4:2:0 Y4M (BT.601 limited range), what Chromium's file-backed fake camera reads.
    static func writeCameraFile(_ path: String, frames: Int = cameraFrames) throws {
        let timeline = SceneTimeline([.init(start: 0, scene: scene)], frameSize: frameSize, start: Point(80, 92))
        let renderer = SceneRenderer(frameSize: frameSize)
        let s = frameSize, c = frameSize / 2
        var out = Array("YUV4MPEG2 W\(s) H\(s) F\(fps):1 Ip A1:1 C420jpeg\n".utf8)
        for f in 0..<frames {
            let rgb = renderer.render(timeline.truth(at: f))
            var y = [UInt8](repeating: 0, count: s * s), cb = [UInt8](repeating: 0, count: c * c), cr = cb
            func px(_ x: Int, _ yy: Int) -> (Double, Double, Double) {
                let o = 3 * (yy * s + x)
                return (Double(rgb[o]), Double(rgb[o + 1]), Double(rgb[o + 2]))
            }
            for yy in 0..<s {
                for x in 0..<s {
                    let (r, g, b) = px(x, yy)
                    y[yy * s + x] = UInt8((16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255).rounded())
                }
            }
            for yy in 0..<c {
                for x in 0..<c {
                    var (u, v) = (0.0, 0.0)
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        let (r, g, b) = px(2 * x + dx, 2 * yy + dy)
                        u += (-37.797 * r - 74.203 * g + 112 * b) / 255 / 4
                        v += (112 * r - 93.786 * g - 18.214 * b) / 255 / 4
                    }
                    cb[yy * c + x] = UInt8((128 + u).rounded()); cr[yy * c + x] = UInt8((128 + v).rounded())
                }
            }
            out += Array("FRAME\n".utf8) + y + cb + cr
        }
        try Data(out).write(to: URL(fileURLWithPath: path))
    }

    /// Injected before the page's own script: measures the input canvas as each frame is sent and the output
    /// canvas as each frame is drawn: [width, height, object pixels, centroid x / width, centroid y / height, r, g, b].
    static let probe = #"""
    (() => {
      const probe = { inputs: [], outputs: [] };
      window.reelProbe = probe;
      function measure(canvas) {
        const w = canvas.width, h = canvas.height, d = canvas.getContext("2d").getImageData(0, 0, w, h).data;
        let n = 0, sx = 0, sy = 0, sr = 0, sg = 0, sb = 0;
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
          const i = 4 * (y * w + x), r = d[i], g = d[i + 1], b = d[i + 2];
          const dr = r - 40, dg = g - 80, db = b - 220;    // the background's blue
          if (dr * dr + dg * dg + db * db > 100 * 100) { n++; sx += x + 0.5; sy += y + 0.5; sr += r; sg += g; sb += b; }
        }
        return n === 0 ? [w, h, 0, 0, 0, 0, 0, 0] : [w, h, n, sx / n / w, sy / n / h, sr / n, sg / n, sb / n];
      }
      const send = WebSocket.prototype.send;
      WebSocket.prototype.send = function (data) {
        if (typeof data !== "string") probe.inputs.push(measure(document.getElementById("inputView")));
        return send.call(this, data);
      };
      const draw = CanvasRenderingContext2D.prototype.drawImage;
      CanvasRenderingContext2D.prototype.drawImage = function (...args) {
        const result = draw.apply(this, args);
        if (this.canvas.id === "video") probe.outputs.push(measure(this.canvas));
        return result;
      };
    })();
    """#

    /// One measured frame.
    struct Object: CustomStringConvertible {
        var area: Double, x: Double, y: Double, colour: SceneColour?
        init(_ m: JSON) {
            var items: [JSON] = []
            if case .array(let values) = m { items = values }
            let v = (0..<8).map { $0 < items.count ? items[$0].double ?? 0 : 0 }
            area = v[2] / max(v[0] * v[1], 1)
            (x, y) = (v[3], v[4])
            colour = v[2] > 0 ? SceneColour.nearest(to: RGB(UInt8(v[5].rounded()), UInt8(v[6].rounded()), UInt8(v[7].rounded()))) : nil
        }
        var description: String { String(format: "(%.3f, %.3f) area %.3f %@", x, y, area, colour?.rawValue ?? "none") }
    }

    /// A page of the studio in headless Chromium, driven over the DevTools protocol.
    struct Page {
        let cdp: DevToolsSession
        let session: String

        func call(_ method: String, _ params: JSON = [:]) async throws -> JSON { try await cdp.call(method, params, session: session) }

        /// `expression`'s value, through JSON (promises awaited).
        func evaluate(_ expression: String) async throws -> JSON {
            let result = try await call("Runtime.evaluate", ["expression": .string("JSON.stringify(\(expression))"),
                                                             "returnByValue": true, "awaitPromise": true])
            return try result["result"]?["value"]?.string.map { try JSON.parse(Data($0.utf8)) } ?? .null
        }

        /// Polls `window.reelStats` until `done` holds, an error shows, or `seconds` pass.
        func stats(within seconds: Double, until done: (JSON) -> Bool) async throws -> JSON {
            var stats = JSON.null
            let deadline = ContinuousClock.now + .seconds(seconds)
            while ContinuousClock.now < deadline {
                stats = try await evaluate("window.reelStats || null")
                if done(stats) { break }
                if let errors = stats["errors"], errors != .array([]) { break }
                try await Task.sleep(for: .milliseconds(500))
            }
            return stats
        }

        /// What the probe measured: each frame sent, each frame drawn.
        func measured() async throws -> (sent: [Object], drawn: [Object]) {
            let probe = try await evaluate("window.reelProbe")
            guard case .array(let sent) = probe["inputs"] ?? .null, case .array(let drawn) = probe["outputs"] ?? .null else {
                Issue.record("no probe: \(probe.text)")
                return ([], [])
            }
            return (sent.map(Object.init), drawn.map(Object.init))
        }
    }

    /// Serves the tiny model (with its encoder) at 128 x 128, 16 fps, opens `query` of the studio in a headless
    /// Chromium with `probe` injected, and runs `body` on the page. The server must be left without sessions.
    static func withStudio(_ query: String, chromiumArguments: [String] = [], profile: String,
                           configure: (inout ServerConfiguration) -> Void = { _ in },
                           _ body: @escaping @Sendable (Page, ReelServer) async throws -> Void) async throws {
        guard let chromium = BrowserTests.findChromium() else { print("BrowserVideoToVideoTests: no chromium; skipped"); return }
        var config = TestModel.config { $0.defaultWidth = 128; $0.defaultHeight = 128; $0.playbackLead = .seconds(1) }
        config.defaultFPS = fps
        configure(&config)
        let server = try ReelServer(manager: SessionManager(model: try TestModel.tiny(encoder: true), config: config))
        try await HTTPAPITests.app(server).test(.live) { client in
            let port = try #require(client.port)
            let browser = try DevToolsBrowser(chromium: chromium, profile: profile, url: "about:blank", arguments: chromiumArguments)
            defer { browser.close() }
            var wsConfig = WebSocketClientConfiguration()
            wsConfig.maxFrameSize = 1 << 24
            try await WebSocketClient.connect(url: try await browser.endpoint(), configuration: wsConfig,
                                              logger: Logger(label: "cdp")) { inbound, outbound, _ in
                let cdp = DevToolsSession(inbound: inbound.messages(maxSize: 1 << 26).makeAsyncIterator(), outbound: outbound)
                guard let session = try await cdp.attachToPage() else { return }
                let page = Page(cdp: cdp, session: session)
                _ = try await page.call("Page.enable")
                _ = try await page.call("Page.addScriptToEvaluateOnNewDocument", ["source": .string(probe)])
                _ = try await page.call("Page.navigate", ["url": .string("http://127.0.0.1:\(port)/?\(query)")])
                try await body(page, server)
            }
        }
        #expect(await eventually { await server.manager.counts.total == 0 }, "closing the page frees its session")
        await server.manager.shutdown()
    }

    static func query(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text }

    /// Chooses `path` in the page's file input (once the page has loaded) and presses Start.
    static func startWithFile(_ page: Page, _ path: String) async throws {
        #expect(await eventually(300) { (try? await page.evaluate("document.readyState")) == "complete" })
        let root = try #require(try await page.call("DOM.getDocument")["root"]?["nodeId"])
        let file = try #require(try await page.call("DOM.querySelector", ["nodeId": root, "selector": "#file"])["nodeId"])
        _ = try await page.call("DOM.setFileInputFiles", ["nodeId": file, "files": [.string(path)]])
        _ = try await page.evaluate("document.getElementById('start').click()")
    }

    @Test func cameraIsRestyledWhereItsObjectIs() async throws {
        let env = ProcessInfo.processInfo.environment
        let noise = env["REEL_BROWSER_V2V_NOISE"].flatMap(Double.init) ?? 0.6
        let steps = env["REEL_BROWSER_V2V_STEPS"].flatMap(Int.init) ?? 2
        let dir = NSTemporaryDirectory() + "reel-v2v-browser-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let camera = dir + "/camera.y4m"
        try Self.writeCameraFile(camera)
        let query = "prompt=\(Self.query(Self.prompt))&seed=1&autostart=1&input=camera&noise=\(noise)&steps=\(steps)"
        try await Self.withStudio(query, chromiumArguments: [
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--use-file-for-fake-video-capture=\(camera)",
            "--autoplay-policy=no-user-gesture-required",
        ], profile: dir + "/profile") { page, server in
            let stats = try await page.stats(within: 300) { ($0["framesDrawn"]?.int ?? 0) >= 64 }
            let (sent, drawn) = try await page.measured()
            print("BrowserVideoToVideoTests: noise \(noise), steps \(steps): \(stats.text)")
            let status = try #require(await server.manager.all.first).statusMessage()
            print("BrowserVideoToVideoTests: server: \(status.inputFrames ?? -1) frames taken, \(status.inputFramesDropped ?? -1) dropped")

            // What must hold whatever the model: the camera's frames went out and frames came back, one for one.
            #expect(drawn.count >= 40, "output frames drawn: \(stats.text)")
            #expect(stats["errors"] == .array([]), "\(stats.text)")
            #expect(status.input == "video" && status.inputFramesDropped == 0, "the server dropped no input frame")
            #expect(sent.count >= drawn.count)
            let first = try #require(sent.first)
            #expect(first.colour == .red && abs(first.x - 0.5) + abs(first.y - 0.5) > 0.1,
                    "the input's red object starts off-centre: \(first)")

            // Restyling, per output frame k against input frame k.
            let pairs = Array(zip(sent, drawn))
            let distances = pairs.map { (input, output) in output.colour == nil ? 1.0 : hypot(output.x - input.x, output.y - input.y) }
            let placed = distances.filter { $0 <= 0.08 }.count
            let coloured = pairs.filter { $0.1.colour == .green }.count
            var colours: [String: Int] = [:]
            for (_, output) in pairs { colours[output.colour?.rawValue ?? "none", default: 0] += 1 }
            let median = distances.sorted()[distances.count / 2]
            print(String(format: "BrowserVideoToVideoTests: noise %.2f steps %d: %d frames; object within 0.08 of the input's in %d "
                         + "(median distance %.3f), green in %d; colours %@", noise, steps, pairs.count, placed, median, coloured,
                         colours.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
            for k in stride(from: 0, to: pairs.count, by: 8) { print("  frame \(k): input \(pairs[k].0), output \(pairs[k].1)") }
            // Measured with the shipped model (noise 0.6, 2 steps): 54 of 65 frames within 0.08 (median 0.045), 65 green;
            // 40-44 of 65 (median 0.035 where printed) with the whole suite and other builds on the 2 cores: the camera runs in real
            // time, so a slower server samples it more sparsely and its frames jump further between the ones sent
            // (also where Chromium's fake device loops its file); the output catches up a block later.
            #expect(Double(placed) >= 0.5 * Double(pairs.count), "the output's object follows the input's")
            #expect(median <= 0.08, "median distance \(median)")
            #expect(Double(coloured) >= 0.8 * Double(pairs.count), "the output's object has the prompt's colour")
        }
    }

    /// The page's File input with an image: sent once as a JPEG, the video opens on it (image-to-video). The
    /// first block's frames are the image's own clip, encoded and decoded: its red object where the image has it.
    @Test func imageFileOpensTheVideo() async throws {
        let dir = NSTemporaryDirectory() + "reel-i2v-browser-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let timeline = SceneTimeline([.init(start: 0, scene: Self.scene)], frameSize: Self.frameSize, start: Point(80, 92))
        let still = SceneRenderer(frameSize: Self.frameSize).render(timeline.truth(at: 0))
        try Data(try PNGEncoder.encode(width: Self.frameSize, height: Self.frameSize, rgb: still[...]))
            .write(to: URL(fileURLWithPath: dir + "/still.png"))
        try await Self.withStudio("prompt=\(Self.query(Self.prompt))&input=file", profile: dir + "/profile",
                                  configure: { $0.defaultHTTPSeconds = 2 }) { page, _ in
            try await Self.startWithFile(page, dir + "/still.png")
            let stats = try await page.stats(within: 180) { $0["state"] == "finished" || ($0["framesDrawn"]?.int ?? 0) >= 24 }
            let (sent, drawn) = try await page.measured()
            print("BrowserVideoToVideoTests: image: \(stats.text); sent \(sent), first frames drawn \(drawn.prefix(9))")
            #expect(stats["input"] == "image" && stats["inputSent"] == 1 && stats["errors"] == .array([]), "\(stats.text)")
            let image = try #require(sent.first)
            #expect(image.colour == .red && abs(image.x - 80.0 / 256) < 0.02, "the image as sent: \(image)")
            #expect(drawn.count >= 9, "\(stats.text)")
            for frame in drawn.prefix(9) {
                #expect(frame.colour == .red && hypot(frame.x - image.x, frame.y - image.y) < 0.05,
                        "the image's clip shows its red object where it is: \(frame)")
            }
        }
    }

    /// The page's File input with a video (WebM, made by ffmpeg from the drawn scene): played into the hidden
    /// <video>, paused while the server is behind, sent frame by frame, and at its end `end` finishes the session
    /// with every whole block converted.
    @Test(.enabled(if: FFmpegSink.findFFmpeg() != nil, "ffmpeg makes the WebM"))
    func videoFileIsConvertedToItsEnd() async throws {
        let dir = NSTemporaryDirectory() + "reel-file-browser-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.writeCameraFile(dir + "/clip.y4m", frames: 48)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try #require(FFmpegSink.findFFmpeg()))
        p.arguments = ["-hide_banner", "-loglevel", "error", "-i", dir + "/clip.y4m", "-c:v", "libvpx", "-b:v", "1M",
                       "-deadline", "realtime", dir + "/clip.webm"]
        try p.run()
        p.waitForExit()
        try #require(p.terminationStatus == 0, "ffmpeg made the WebM")
        try await Self.withStudio("prompt=\(Self.query(Self.prompt))&input=file&steps=1", profile: dir + "/profile") { page, server in
            try await Self.startWithFile(page, dir + "/clip.webm")
            let stats = try await page.stats(within: 180) { $0["state"] == "finished" || $0["state"] == "failed" }
            let (sent, drawn) = try await page.measured()
            print("BrowserVideoToVideoTests: video file: \(stats.text); \(sent.count) sent, \(drawn.count) drawn")
            #expect(stats["state"] == "finished" && stats["input"] == "video" && stats["errors"] == .array([]), "\(stats.text)")
            // The file's 48 frames at 16 fps were sampled as it played (fewer when the machine is busy); 5, then
            // 4 a block, came back.
            let taken = sent.count
            #expect((24...52).contains(taken), "\(taken) frames sent of the file's 48")
            #expect(await eventually(120) { (try? await page.evaluate("window.reelStats.framesDrawn"))?.int == 5 + (taken - 5) / 4 * 4 },
                    "every whole block drawn: \(stats.text)")
            #expect(sent.allSatisfy { $0.colour == .red })
            let status = try #require(await server.manager.all.first).statusMessage()
            #expect(status.inputFrames == taken && status.inputFramesDropped == 0)
        }
    }
}
