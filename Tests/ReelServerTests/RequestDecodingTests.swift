import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWebSocket
import HummingbirdWSClient
import Testing
import ReelCore
@testable import ReelServer

/// Every rule of a start request, through `POST /v1/sessions`: the status, code and whole message a
/// client is told for each kind of bad body, and the defaults and limits a good one gets; and every
/// rule of the WebSocket's control messages, with the messages the server sends.
@Suite struct RequestDecodingTests {
    static let tooLong = String(repeating: "long ", count: 50)

    static let refused: [(body: String, status: HTTPResponse.Status, code: String, message: String)] = [
        ("[1, 2]", .badRequest, "bad_request", "a start request is a JSON object"),
        ("null", .badRequest, "bad_request", "a start request is a JSON object"),
        ("{\"prompt\": \"a cat\", \"colour\": 1}", .badRequest, "unknown_field",
         "unknown field 'colour'; a start request has prompt, seed and options"),
        ("{\"seed\": 1}", .badRequest, "bad_request", "prompt must be a string"),
        ("{\"prompt\": 3}", .badRequest, "bad_request", "prompt must be a string"),
        ("{\"prompt\": null}", .badRequest, "bad_request", "prompt must be a string"),
        ("{\"prompt\": \" \\n \"}", .badRequest, "bad_request", "prompt is empty"),
        ("{\"prompt\": \"\(tooLong)\"}", .contentTooLarge, "prompt_too_long", "prompt has 249 bytes; the limit is 100"),
        ("{\"prompt\": \"a cat\", \"seed\": -1}", .badRequest, "bad_request", "seed must be a non-negative integer"),
        ("{\"prompt\": \"a cat\", \"seed\": 1.5}", .badRequest, "bad_request", "seed must be a non-negative integer"),
        ("{\"prompt\": \"a cat\", \"seed\": \"7\"}", .badRequest, "bad_request", "seed must be a non-negative integer"),
        ("{\"prompt\": \"a cat\", \"seed\": null}", .badRequest, "bad_request", "seed must be a non-negative integer"),
        ("{\"prompt\": \"a cat\", \"seed\": 1e30}", .badRequest, "bad_request", "seed must be a non-negative integer"),
        ("{\"prompt\": \"a cat\", \"options\": 3}", .badRequest, "bad_request", "options must be an object"),
        ("{\"prompt\": \"a cat\", \"options\": null}", .badRequest, "bad_request", "options must be an object"),
        ("{\"prompt\": \"a cat\", \"options\": {\"speed\": 2}}", .badRequest, "unknown_option",
         "unknown option 'speed'; known options: width, height, fps, seconds, quality, record, input, noiseScale, steps, codec"),
        ("{\"prompt\": \"a cat\", \"options\": {\"input\": \"camera\"}}", .badRequest, "bad_request",
         "options.input must be \"video\", \"image\" or null"),
        ("{\"prompt\": \"a cat\", \"options\": {\"input\": \"video\"}}", .badRequest, "no_upload",
         "options.input 'video' needs the file: send multipart/form-data with a 'request' part (this JSON) and an 'input' part (the video or image)"),
        ("{\"prompt\": \"a cat\", \"options\": {\"noiseScale\": 0.1}}", .badRequest, "bad_request", "options.noiseScale must be in 0.2...1, got 0.1"),
        ("{\"prompt\": \"a cat\", \"options\": {\"noiseScale\": \"high\"}}", .badRequest, "bad_request", "options.noiseScale must be a number"),
        ("{\"prompt\": \"a cat\", \"options\": {\"steps\": 5}}", .badRequest, "bad_request", "options.steps must be in 1...4, got 5"),
        ("{\"prompt\": \"a cat\", \"options\": {\"width\": \"a\"}}", .badRequest, "bad_request", "options.width must be an integer"),
        ("{\"prompt\": \"a cat\", \"options\": {\"height\": 1.5}}", .badRequest, "bad_request", "options.height must be an integer"),
        ("{\"prompt\": \"a cat\", \"options\": {\"fps\": true}}", .badRequest, "bad_request", "options.fps must be an integer"),
        ("{\"prompt\": \"a cat\", \"options\": {\"quality\": null}}", .badRequest, "bad_request", "options.quality must be an integer"),
        ("{\"prompt\": \"a cat\", \"options\": {\"seconds\": \"long\"}}", .badRequest, "bad_request",
         "options.seconds must be a number or null"),
        ("{\"prompt\": \"a cat\", \"options\": {\"record\": 1}}", .badRequest, "bad_request", "options.record must be true or false"),
        ("{\"prompt\": \"a cat\", \"options\": {\"record\": null}}", .badRequest, "bad_request", "options.record must be true or false"),
        ("{\"prompt\": \"a cat\", \"options\": {\"width\": 50}}", .badRequest, "bad_request",
         "options.width and options.height must be positive multiples of 16, got 50x32"),
        ("{\"prompt\": \"a cat\", \"options\": {\"width\": 1280, \"height\": 1280}}", .badRequest, "bad_request",
         "1280x1280 is larger than this server allows (921600 pixels)"),
        ("{\"prompt\": \"a cat\", \"options\": {\"fps\": 0}}", .badRequest, "bad_request", "options.fps must be in 1...120, got 0"),
        ("{\"prompt\": \"a cat\", \"options\": {\"quality\": 101}}", .badRequest, "bad_request",
         "options.quality must be in 1...100, got 101"),
        ("{\"prompt\": \"a cat\", \"options\": {\"codec\": \"vp9\"}}", .badRequest, "bad_request",
         "options.codec must be \"jpeg\" or \"h264\""),
        ("{\"prompt\": \"a cat\", \"options\": {\"seconds\": 0}}", .badRequest, "bad_request", "options.seconds must be positive, got 0.0"),
        ("{\"prompt\": \"a cat\", \"options\": {\"seconds\": 200}}", .badRequest, "bad_request",
         "options.seconds is 200.0; this server allows at most 100.0"),
    ]

    @Test func badStartRequestsAreRefusedWithTheirMessage() async throws {
        let server = try TestModel.server { $0.maxPromptBytes = 100; $0.maxSeconds = 100 }
        try await HTTPAPITests.app(server).test(.router) { client in
            let malformed = try await HTTPAPITests.post(client, "{\"prompt\": ")
            #expect(malformed.status == .badRequest)
            let error = try HTTPAPITests.json(malformed)["error"]
            #expect(error?["code"] == "bad_json")
            #expect(error?["message"]?.string?.hasPrefix("malformed JSON: ") == true, "\(error?.text ?? "")")
            for (body, status, code, message) in Self.refused {
                let response = try await HTTPAPITests.post(client, body)
                #expect(response.status == status, "\(body.prefix(60))")
                #expect(try HTTPAPITests.json(response) == ["error": ["code": .string(code), "message": .string(message)]],
                        "\(body.prefix(60))")
            }
        }
        #expect(await server.manager.counts.total == 0)
        await server.manager.shutdown()
    }

    @Test func goodStartRequestsGetDefaultsAndLimits() async throws {
        let server = try TestModel.server { $0.maxSeconds = 100; $0.maxActiveSessions = 0 }   // all stay queued
        try await HTTPAPITests.app(server).test(.router) { client in
            let cases: [(body: String, expected: JSON)] = [
                ("{\"prompt\": \" a cat \\n\"}",
                 ["prompt": "a cat", "seed": 0, "width": 48, "height": 32, "fps": 16, "seconds": 10]),
                ("{\"type\": 7, \"prompt\": \"a cat\", \"seed\": 3.0, \"options\": {\"width\": 32.0, \"seconds\": 0.25, \"fps\": 1e1}}",
                 ["prompt": "a cat", "seed": 3, "width": 32, "height": 32, "fps": 10, "seconds": 0.25]),
                ("{\"prompt\": \"a cat\", \"options\": {\"seconds\": null, \"record\": false, \"quality\": 5}}",
                 ["prompt": "a cat", "seed": 0, "width": 48, "height": 32, "fps": 16, "seconds": 100]),
            ]
            for (i, (body, expected)) in cases.enumerated() {
                let response = try await HTTPAPITests.post(client, body)
                #expect(response.status == .created, "\(body)")
                let status = try HTTPAPITests.json(response)
                guard case .object(let fields) = status, case .object(let wanted) = expected else { Issue.record("\(body)"); continue }
                #expect(Set(fields.keys) == ["id", "state", "prompt", "seed", "width", "height", "fps", "seconds", "blocks", "frames",
                                             "promptIndex", "promptSwitches", "lastBlockMs", "lastDecodeMs", "queuePosition", "video",
                                             "input"])
                #expect(status["input"] == .null)
                for (key, value) in wanted { #expect(fields[key] == value, "\(key) of \(body)") }
                #expect(status["state"] == "queued" && status["queuePosition"] == .int(i + 1) && status["video"] == .null)
                #expect(status["blocks"] == 0 && status["lastBlockMs"] == 0)
            }
            let list = try HTTPAPITests.json(try await client.execute(uri: "/v1/sessions", method: .get))
            guard case .array(let sessions) = try #require(list["sessions"]) else { Issue.record("no list"); return }
            #expect(sessions.count == 3)
            let health = try HTTPAPITests.json(try await client.execute(uri: "/healthz", method: .get))
            #expect(health == ["status": "ok", "device": "cpu", "sessions": 3, "active": 0, "queued": 3,
                               "maxActiveSessions": 0, "maxQueuedSessions": 8])
        }
        await server.manager.shutdown()
    }

    static func error(_ code: String, _ message: String) -> JSON {
        ["type": "error", "code": .string(code), "message": .string(message)]
    }

    static let notAMessage = "a message is a JSON object with a \"type\": start, prompt, pause, resume, stop or end"

    @Test func controlMessagesAreCheckedAndAnswered() async throws {
        let server = try TestModel.server()
        try await HTTPAPITests.app(server).test(.live) { client in
            try await client.ws("/v1/ws") { stream, outbound, _ in
                var inbound = stream.messages(maxSize: 1 << 20).makeAsyncIterator()
                let seen = WebSocketTests.Seen()
                let refused: [(String, JSON)] = [
                    ("[1]", Self.error("bad_request", Self.notAMessage)),
                    ("{\"type\": 3}", Self.error("bad_request", Self.notAMessage)),
                    ("{\"prompt\": \"a cat\"}", Self.error("bad_request", Self.notAMessage)),
                    ("{\"type\": \"dance\"}",
                     Self.error("unknown_type", "unknown message type 'dance'; known: start, prompt, pause, resume, stop, end")),
                    ("{\"type\": \"prompt\", \"prompt\": 3}", Self.error("no_session", "send {\"type\": \"start\", \"prompt\": ...} first")),
                    ("{\"type\": \"stop\"}", Self.error("no_session", "send {\"type\": \"start\", \"prompt\": ...} first")),
                    ("{\"type\": \"start\", \"prompt\": \"a cat\", \"colour\": 1}",
                     Self.error("unknown_field", "unknown field 'colour'; a start request has prompt, seed and options")),
                    ("{\"type\": \"start\", \"prompt\": \"a cat\", \"options\": {\"fps\": 0}}",
                     Self.error("bad_request", "options.fps must be in 1...120, got 0")),
                ]
                try await outbound.write(.text("{not json"))
                for (text, _) in refused { try await outbound.write(.text(text)) }
                try await outbound.write(.binary(ByteBuffer(bytes: [1, 2, 3])))
                try await WebSocketTests.read(&inbound, into: seen) { $0.messages.count == refused.count + 2 }
                let answers = seen.messages
                #expect(answers.first?["code"] == "bad_json" && answers.first?["message"]?.string?.hasPrefix("malformed JSON: ") == true)
                for (i, (text, expected)) in refused.enumerated() { #expect(answers[i + 1] == expected, "\(text)") }
                #expect(answers.last == Self.error("bad_message", "binary messages are input frames (JPEG or PNG) of a session started "
                                                   + "with options.input; send control messages as JSON text"))

                try await outbound.write(.text("{\"type\": \"start\", \"prompt\": \"a cat\", \"seed\": 2, \"options\": {\"record\": false}}"))
                try await WebSocketTests.read(&inbound, into: seen) { $0.messages.contains { $0["type"] == "block" } }
                let session = try #require(seen.messages.first { $0["type"] == "session" })
                guard case .object(let fields) = session else { Issue.record("no session message"); return }
                #expect(Set(fields.keys) == ["type", "id", "state", "prompt", "seed", "width", "height", "fps", "seconds", "blocks",
                                             "frames", "promptIndex", "promptSwitches", "lastBlockMs", "lastDecodeMs",
                                             "queuePosition", "video", "input"])
                #expect(session["seconds"] == .null && session["seed"] == 2 && session["prompt"] == "a cat")
                let id = try #require(session["id"]?.string)
                guard case .object(let block) = try #require(seen.messages.first { $0["type"] == "block" }) else { return }
                #expect(Set(block.keys) == ["type", "session", "index", "startFrame", "promptIndex", "firstFrame", "frames",
                                            "latentFrame", "endsBlock", "width", "height", "ditMs", "recacheMs", "decodeMs",
                                            "encodeMs", "bytes", "codec", "madeAt"])
                #expect(block["session"] == .string(id) && block["index"] == 0 && block["firstFrame"] == 0 && block["width"] == 48)

                let before = seen.messages.count
                for text in ["{\"type\": \"prompt\", \"prompt\": 3}", "{\"type\": \"prompt\"}", "{\"type\": \"prompt\", \"prompt\": \"  \"}",
                             "{\"type\": \"prompt\", \"prompt\": \" a dog \", \"extra\": 1}"] {
                    try await outbound.write(.text(text))
                }
                try await WebSocketTests.read(&inbound, into: seen) { $0.messages.contains { $0["type"] == "prompt" } }
                let replies = seen.messages[before...].filter { $0["type"] == "error" || $0["type"] == "prompt" }
                #expect(Array(replies) == [Self.error("bad_request", "prompt must be a string"),
                                           Self.error("bad_request", "prompt must be a string"),
                                           Self.error("bad_request", "prompt is empty"),
                                           ["type": "prompt", "session": .string(id), "prompt": "a dog"]])
                try await outbound.write(.text("{\"type\": \"stop\", \"ignored\": true}"))
                try await WebSocketTests.read(&inbound, into: seen) { $0.states().last == "finished" }
            }
            #expect(await eventually { await server.manager.counts.total == 0 })
        }
        await server.manager.shutdown()
    }
}
