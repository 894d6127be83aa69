import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWebSocket
import HummingbirdWSTesting
import ReelCore
import ReelMedia
import Testing
@testable import ReelServer

/// Sessions with an input, on the micro model (random weights, with an encoder): video-to-video and
/// image-to-video over the WebSocket (JPEG frames as binary messages) and over HTTP (uploads).
@Suite struct InputSessionTests {
    typealias Seen = WebSocketTests.Seen
    static func text(_ json: JSON) -> WebSocketOutboundWriter.OutboundFrame { .text(json.text) }

    /// Frame `i` of a red square moving right on blue, `width` x `height`.
    static func frame(_ i: Int, width: Int = 64, height: Int = 48) throws -> RGBFrames {
        var p = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let inside = (8..<24).contains(y) && ((2 * i)..<(2 * i + 16)).contains(x)
                let o = 3 * (y * width + x)
                (p[o], p[o + 1], p[o + 2]) = inside ? (220, 40, 40) : (40, 80, 220)
            }
        }
        return try RGBFrames(width: width, height: height, pixels: p)
    }

    static func jpeg(_ i: Int) throws -> ByteBuffer {
        ByteBuffer(bytes: try JPEGEncoder(quality: 90).encode(try frame(i), frame: 0))
    }

    static func fastInput(_ c: inout ServerConfiguration) { c.maxInputFPS = 10_000; c.inputQueueFrames = 64 }

    /// Frames sent are converted one for one (5, then 4 a block), in order; `end` brings the last ones out and
    /// finishes the session; the prompt of a video-to-video session is fixed; metrics count the input.
    @Test func videoToVideoOverTheSocket() async throws {
        let server = try TestModel.server(Self.fastInput)
        try await HTTPAPITests.app(server).test(.live) { client in
            try await client.ws("/v1/ws") { stream, outbound, _ in
                var inbound = stream.messages(maxSize: 1 << 20).makeAsyncIterator()
                let seen = Seen()
                try await outbound.write(Self.text(["type": "start", "prompt": "a red circle", "seed": 1,
                                                    "options": ["input": "video", "steps": 1, "noiseScale": 0.6]]))
                try await WebSocketTests.read(&inbound, into: seen) { $0.messages.contains { $0["type"] == "session" } }
                #expect(seen.messages.first?["input"] == "video")
                for i in 0..<15 { try await outbound.write(.binary(try Self.jpeg(i))) }
                try await outbound.write(Self.text(["type": "prompt", "prompt": "a green square"]))
                try await outbound.write(Self.text(["type": "end"]))
                try await WebSocketTests.read(&inbound, into: seen) { $0.states().last == "finished" || $0.states().last == "failed" }
                #expect(seen.states().last == "finished", "\(seen.messages.last?.text ?? "")")
                // 15 frames: 5 + 4 + 4 converted, 2 left over.
                #expect(seen.frames.map(\.frame) == Array(0..<13))
                let blocks = seen.messages.filter { $0["type"] == "block" }
                #expect(blocks.map { $0["frames"] } == [5, 4, 4] && blocks.first?["width"] == 48 && blocks.first?["height"] == 32)
                #expect(seen.messages.contains { $0["code"] == "prompt_fixed" })
                let final = try #require(seen.messages.last { $0["type"] == "state" })
                #expect(final["inputFrames"] == 15 && final["inputFramesDropped"] == 0)
            }
        }
        #expect(server.manager.metrics.value("reel_input_frames_received_total") == 15)
        #expect(server.manager.metrics.value("reel_input_frames_dropped_total") == 0)
        await server.manager.shutdown()
    }

    /// An image session takes its first frame as the video's opening: the image's still clip (one block of 9
    /// frames) and the generated frames after it.
    @Test func imageToVideoOverTheSocket() async throws {
        let server = try TestModel.server()
        try await HTTPAPITests.app(server).test(.live) { client in
            try await client.ws("/v1/ws") { stream, outbound, _ in
                var inbound = stream.messages(maxSize: 1 << 20).makeAsyncIterator()
                let seen = Seen()
                try await outbound.write(Self.text(["type": "start", "prompt": "a red square", "options": ["input": "image", "seconds": 1.5]]))
                try await outbound.write(.binary(try Self.jpeg(3)))
                try await WebSocketTests.read(&inbound, into: seen) { $0.states().last == "finished" || $0.states().last == "failed" }
                #expect(seen.states().last == "finished", "\(seen.messages.last?.text ?? "")")
                #expect(seen.frames.count == 33, "9 frames of the image's block, then 2 generated blocks")
            }
        }
        await server.manager.shutdown()
    }

    /// A frame that is not a JPEG, or one over the size limit, is answered with an error and ends that session's
    /// input (the frames before it are converted; the session finishes); another client's session goes on.
    @Test func badFramesEndTheirSessionOnly() async throws {
        let server = try TestModel.server {
            Self.fastInput(&$0)
            $0.maxActiveSessions = 2
            $0.maxInputFrameBytes = 8000
        }
        try await HTTPAPITests.app(server).test(.live) { client in
            let otherDone = AsyncStream<Void>.makeStream()
            let afterwards = Seen()
            async let other = client.ws("/v1/ws") { stream, outbound, _ in
                var inbound = stream.messages(maxSize: 1 << 20).makeAsyncIterator()
                let seen = Seen()
                try await outbound.write(Self.text(["type": "start", "prompt": "a blue circle"]))
                try await WebSocketTests.read(&inbound, into: seen) { $0.frames.count >= 9 }
                for await _ in otherDone.stream { break }
                let before = seen.frames.count
                try await WebSocketTests.read(&inbound, into: seen) { $0.frames.count >= before + 8 }
                afterwards.add(["frames": .int(seen.frames.count - before)])
            }
            try await client.ws("/v1/ws") { stream, outbound, _ in
                var inbound = stream.messages(maxSize: 1 << 20).makeAsyncIterator()
                let seen = Seen()
                try await outbound.write(Self.text(["type": "start", "prompt": "a red circle", "options": ["input": "video"]]))
                for i in 0..<6 { try await outbound.write(.binary(try Self.jpeg(i))) }
                try await outbound.write(.binary(ByteBuffer(bytes: [0xFF, 0xD8, 0xFF, 0xC2, 0x00, 0x02, 0x13, 0x37])))
                try await WebSocketTests.read(&inbound, into: seen) { $0.states().last == "finished" || $0.states().last == "failed" }
                #expect(seen.messages.first { $0["type"] == "error" }?["code"] == "bad_frame")
                #expect(seen.states().last == "finished")
                #expect(seen.frames.count == 5, "the frames before the bad one are converted")

                let seen2 = Seen()
                try await outbound.write(Self.text(["type": "start", "prompt": "a red circle", "options": ["input": "video"]]))
                try await outbound.write(.binary(ByteBuffer(bytes: [0xFF, 0xD8, 0xFF] + [UInt8](repeating: 7, count: 9000))))
                try await outbound.write(.binary(ByteBuffer(bytes: [1, 2, 3])))
                try await WebSocketTests.read(&inbound, into: seen2) { $0.messages.filter { $0["type"] == "error" }.count >= 2 }
                let codes = seen2.messages.filter { $0["type"] == "error" }.compactMap { $0["code"]?.string }
                #expect(codes.first == "frame_too_large")
                #expect(codes.dropFirst().first == "bad_frame" || codes.dropFirst().first == "input_ended")
            }
            otherDone.continuation.yield()
            _ = try await other
            #expect((afterwards.messages.first?["frames"]?.int ?? 0) >= 8, "the other client's session kept running")
        }
        #expect(server.manager.metrics.value("reel_input_frames_rejected_total") >= 2)
        await server.manager.shutdown()
    }

    /// Baseline JPEG and PNG decode in process; a progressive JPEG (libjpeg-turbo's, from the media tests'
    /// fixtures) goes through ffmpeg where it is installed, and is refused by name where it is not.
    @Test func inputImagesDecodeInProcessOrThroughFFmpeg() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ReelMediaTests/Fixtures/jpeg")
        let baseline = [UInt8](try Data(contentsOf: fixtures.appendingPathComponent("420.jpg")))
        let progressive = [UInt8](try Data(contentsOf: fixtures.appendingPathComponent("progressive.jpg")))
        let a = try InputImage.decode(baseline, maxPixels: 1 << 20, what: "frame")
        #expect(a.width == 61 && a.height == 37)
        #expect(throws: APIError.self) { try InputImage.decode(baseline, maxPixels: 100, what: "frame") }
        if testFFmpegPresent {
            let b = try InputImage.decode(progressive, maxPixels: 1 << 20, what: "frame")
            #expect(b.width == 61 && b.height == 37)
        } else {
            #expect(throws: APIError(.badRequest, "bad_frame", "frame: progressive JPEG is not supported (baseline only)")) {
                try InputImage.decode(progressive, maxPixels: 1 << 20, what: "frame")
            }
        }
        let png = try PNGEncoder.encode(width: 3, height: 2, rgb: [UInt8](repeating: 7, count: 18)[...])
        #expect(try InputImage.decode(png, maxPixels: 100, what: "frame").pixels == [UInt8](repeating: 7, count: 18))
        #expect(throws: APIError.self) { try InputImage.decode(Array("GIF89a".utf8), maxPixels: 100, what: "frame") }
    }

    /// A live input that sends nothing fails its session after the stall timeout, with the reason in its state.
    @Test func silentInputFailsItsSession() async throws {
        let server = try TestModel.server { $0.inputStallSeconds = 0.5 }
        try await HTTPAPITests.app(server).test(.live) { client in
            try await client.ws("/v1/ws") { stream, outbound, _ in
                var inbound = stream.messages(maxSize: 1 << 20).makeAsyncIterator()
                let seen = Seen()
                try await outbound.write(Self.text(["type": "start", "prompt": "a red circle", "options": ["input": "video"]]))
                try await outbound.write(.binary(try Self.jpeg(0)))
                try await WebSocketTests.read(&inbound, into: seen) { $0.states().last == "failed" || $0.states().last == "finished" }
                let final = try #require(seen.messages.last { $0["type"] == "state" })
                #expect(final["state"] == "failed" && final["error"]?.string?.contains("stall timeout") == true, "\(final.text)")
            }
        }
        #expect(server.manager.metrics.value("reel_sessions_failed_total") == 1)
        await server.manager.shutdown()
    }

    /// A burst of a second's worth passes, then frames are taken at the rate.
    @Test func pacerTakesMaxFPSOnAverage() {
        let pacer = InputPacer(maxFPS: 10)
        let t0 = ContinuousClock.now
        #expect((0..<10).allSatisfy { _ in pacer.take(now: t0) })
        #expect(!pacer.take(now: t0))
        #expect(!pacer.take(now: t0 + .milliseconds(50)))
        #expect(pacer.take(now: t0 + .milliseconds(110)))
        #expect(!pacer.take(now: t0 + .milliseconds(150)))
        // Idle for long: the bucket holds one second's worth, no more.
        let later = t0 + .seconds(60)
        #expect((0..<10).allSatisfy { _ in pacer.take(now: later) })
        #expect(!pacer.take(now: later))
    }

    // MARK: - HTTP uploads

    struct FormPart { var name: String; var filename: String?; var type: String?; var body: [UInt8] }

    static func upload(_ client: some TestClientProtocol, _ parts: [FormPart], boundary: String = "reel-test-boundary") async throws -> TestResponse {
        var body: [UInt8] = []
        for p in parts {
            var head = "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(p.name)\""
            if let f = p.filename { head += "; filename=\"\(f)\"" }
            head += "\r\n"
            if let t = p.type { head += "Content-Type: \(t)\r\n" }
            body += Array((head + "\r\n").utf8) + p.body + Array("\r\n".utf8)
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return try await client.execute(uri: "/v1/sessions", method: .post,
                                        headers: [.contentType: "multipart/form-data; boundary=\(boundary)"], body: ByteBuffer(bytes: body))
    }

    static func request(_ json: JSON) -> FormPart { FormPart(name: "request", type: "application/json", body: Array(json.text.utf8)) }

    /// A Y4M (4:4:4) of `count` frames of the moving square.
    static func y4m(_ count: Int) throws -> [UInt8] {
        var out = Array("YUV4MPEG2 W64 H48 F16:1 Ip C444 XCOLORRANGE=FULL\n".utf8)
        for i in 0..<count {
            let f = try frame(i)
            var y: [UInt8] = [], u: [UInt8] = [], v: [UInt8] = []
            for p in stride(from: 0, to: f.pixels.count, by: 3) {
                let (r, g, b) = (Double(f.pixels[p]), Double(f.pixels[p + 1]), Double(f.pixels[p + 2]))
                y.append(UInt8(0.299 * r + 0.587 * g + 0.114 * b))
                u.append(UInt8(max(0, min(255, 128 - 0.168736 * r - 0.331264 * g + 0.5 * b))))
                v.append(UInt8(max(0, min(255, 128 + 0.5 * r - 0.418688 * g - 0.081312 * b))))
            }
            out += Array("FRAME\n".utf8) + y + u + v
        }
        return out
    }

    static func waitForEnd(_ client: some TestClientProtocol, _ id: String) async throws -> JSON {
        var status = JSON.null
        _ = try await eventually {
            status = try HTTPAPITests.json(try await client.execute(uri: "/v1/sessions/\(id)", method: .get))
            return status["state"] == "finished" || status["state"] == "failed"
        }
        return status
    }

    /// An uploaded image opens the video; an uploaded video is restyled frame for frame, its whole length, and
    /// its temporary file is gone when the session ends.
    @Test func uploadsMakeImageAndVideoSessions() async throws {
        let server = try TestModel.server()
        try await HTTPAPITests.app(server).test(.router) { client in
            let png = try PNGEncoder.encode(width: 64, height: 48, rgb: try Self.frame(4).pixels[...])
            let image = try await Self.upload(client, [Self.request(["prompt": "a red square", "options": ["seconds": 1]]),
                                                       FormPart(name: "input", filename: "still.png", type: "image/png", body: png)])
            #expect(image.status == .created)
            let imageID = try #require(try HTTPAPITests.json(image)["id"]?.string)
            #expect(try HTTPAPITests.json(image)["input"] == "image")
            let imageDone = try await Self.waitForEnd(client, imageID)
            #expect(imageDone["state"] == "finished" && (imageDone["frames"]?.int ?? 0) >= 9, "\(imageDone.text)")

            let video = try await Self.upload(client, [Self.request(["prompt": "a red circle", "options": ["steps": 1]]),
                                                       FormPart(name: "input", filename: "clip.y4m", type: nil, body: try Self.y4m(14))])
            #expect(video.status == .created, "\(String(buffer: video.body))")
            let videoID = try #require(try HTTPAPITests.json(video)["id"]?.string)
            let videoDone = try await Self.waitForEnd(client, videoID)
            #expect(videoDone["state"] == "finished" && videoDone["frames"] == 13 && videoDone["input"] == "video", "\(videoDone.text)")
            var uploads = 2.0
            if let ffmpeg = FFmpegSink.findFFmpeg() {
                // An MP4 (ffmpeg's mpeg4) goes through ffmpeg from the temporary file.
                let dir = NSTemporaryDirectory() + "reel-upload-\(UUID().uuidString)"
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: dir) }
                try Data(try Self.y4m(9)).write(to: URL(fileURLWithPath: dir + "/clip.y4m"))
                let p = Process()
                p.executableURL = URL(fileURLWithPath: ffmpeg)
                p.arguments = ["-hide_banner", "-loglevel", "error", "-i", dir + "/clip.y4m", "-c:v", "mpeg4", "-q:v", "2", dir + "/clip.mp4"]
                try p.run()
                p.waitForExit()
                let mp4 = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/clip.mp4")))
                let response = try await Self.upload(client, [Self.request(["prompt": "a red circle"]),
                                                              FormPart(name: "input", filename: "clip.mp4", type: "video/mp4", body: mp4)])
                #expect(response.status == .created, "\(String(buffer: response.body))")
                let done = try await Self.waitForEnd(client, try #require(try HTTPAPITests.json(response)["id"]?.string))
                #expect(done["state"] == "finished" && done["frames"] == 9, "\(done.text)")
                uploads += 1
            }
            let left = try FileManager.default.contentsOfDirectory(atPath: server.config.recordingFolder)
            #expect(!left.contains { $0.hasPrefix("upload-") }, "\(left)")
            #expect(server.manager.metrics.value("reel_uploads_total") == uploads)
        }
        await server.manager.shutdown()
    }

    /// Each malformed upload gets its own 4xx and code; the server goes on.
    @Test func badUploadsGetClearErrors() async throws {
        let server = try TestModel.server { $0.maxUploadBytes = 50_000 }
        try await HTTPAPITests.app(server).test(.router) { client in
            let prompt = Self.request(["prompt": "a cat"])
            let garbage = FormPart(name: "input", filename: "clip.mp4", type: "video/mp4", body: [UInt8](repeating: 0x42, count: 2000))
            let cases: [([FormPart], HTTPResponse.Status, String)] = [
                ([FormPart(name: "input", type: "image/png", body: [1])], .badRequest, "bad_upload"),
                ([prompt], .badRequest, "bad_upload"),
                ([prompt, FormPart(name: "input", type: "image/png", body: [])], .badRequest, "bad_upload"),
                ([prompt, garbage], testFFmpegPresent ? .badRequest : .unsupportedMediaType,
                 testFFmpegPresent ? "bad_input" : "unsupported_media"),
                ([prompt, FormPart(name: "input", type: "image/jpeg", body: [0xFF, 0xD8, 0xFF, 0xDB, 0, 3, 0])], .badRequest, "bad_input"),
                ([prompt, FormPart(name: "input", type: "image/webp", body: Array("RIFF....WEBP".utf8))], .unsupportedMediaType, "unsupported_media"),
                ([prompt, FormPart(name: "input", type: "video/mp4", body: [UInt8](repeating: 0, count: 60_000))], .contentTooLarge, "upload_too_large"),
                ([Self.request(["prompt": "a cat", "options": ["input": "video"]]), FormPart(name: "input", type: "image/png",
                  body: try PNGEncoder.encode(width: 2, height: 2, rgb: [UInt8](repeating: 9, count: 12)[...]))], .badRequest, "bad_request"),
                ([Self.request(["prompt": 3]), garbage], .badRequest, "bad_request"),
            ]
            for (i, (parts, status, code)) in cases.enumerated() {
                let response = try await Self.upload(client, parts)
                #expect(response.status == status, "case \(i): \(String(buffer: response.body))")
                #expect(try HTTPAPITests.json(response)["error"]?["code"]?.string == code, "case \(i): \(String(buffer: response.body))")
            }
            let noBoundary = try await client.execute(uri: "/v1/sessions", method: .post, headers: [.contentType: "multipart/form-data"],
                                                      body: ByteBuffer(string: "x"))
            #expect(try HTTPAPITests.json(noBoundary)["error"]?["code"] == "bad_upload")
            let named = try await HTTPAPITests.post(client, "{\"prompt\": \"a cat\", \"options\": {\"input\": \"video\"}}")
            #expect(named.status == .badRequest)
            #expect(try HTTPAPITests.json(named)["error"]?["code"] == "no_upload")
            #expect(try await HTTPAPITests.post(client, "{\"prompt\": \"a cat\", \"options\": {\"seconds\": 0.5}}").status == .created)
            let left = try FileManager.default.contentsOfDirectory(atPath: server.config.recordingFolder)
            #expect(!left.contains { $0.hasPrefix("upload-") }, "\(left)")
        }
        await server.manager.shutdown()

        let plain = try ReelServer(manager: SessionManager(model: try TestModel.withoutEncoder(), config: TestModel.config()))
        try await HTTPAPITests.app(plain).test(.router) { client in
            let png = try PNGEncoder.encode(width: 2, height: 2, rgb: [UInt8](repeating: 9, count: 12)[...])
            let response = try await Self.upload(client, [Self.request(["prompt": "a cat"]), FormPart(name: "input", type: "image/png", body: png)])
            #expect(response.status == .notImplemented)
            #expect(try HTTPAPITests.json(response)["error"]?["code"] == "no_encoder")
        }
        await plain.manager.shutdown()
    }
}

let testFFmpegPresent = FFmpegSink.findFFmpeg() != nil
