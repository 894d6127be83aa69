import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWebSocket
import Logging
import ReelCore
import Testing
@testable import ReelServer

/// The HTTP API driven in process (HummingbirdTesting's router mode).
@Suite struct HTTPAPITests {
    static func app(_ server: ReelServer) -> Application<RouterResponder<ReelRequestContext>> {
        server.application(host: "127.0.0.1", port: 0, logger: Logger(label: "test"))
    }

    static func json(_ response: TestResponse) throws -> JSON { try JSON.parse(Data(response.body.readableBytesView)) }

    static func post(_ client: some TestClientProtocol, _ body: String) async throws -> TestResponse {
        try await client.execute(uri: "/v1/sessions", method: .post, headers: [.contentType: "application/json"],
                                 body: ByteBuffer(string: body))
    }

    @Test func pageHealthMetricsAndOpenAPIAnswer() async throws {
        let server = try TestModel.server()
        try await Self.app(server).test(.router) { client in
            let page = try await client.execute(uri: "/", method: .get)
            #expect(page.status == .ok)
            #expect(String(buffer: page.body).contains("<canvas id=\"video\""))
            for asset in ["/app.js", "/app.css"] { #expect(try await client.execute(uri: asset, method: .get).status == .ok) }
            let health = try Self.json(try await client.execute(uri: "/healthz", method: .get))
            #expect(health["status"] == "ok" && health["device"] == "cpu")
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("# TYPE reel_sessions_active gauge\nreel_sessions_active 0\n"))
            // Every path of the OpenAPI document answers something other than 404 for its methods.
            let spec = try Self.json(try await client.execute(uri: "/openapi.json", method: .get))
            guard case .object(let paths) = try #require(spec["paths"]) else { Issue.record("no paths"); return }
            #expect(paths.count == 6)
            for (path, item) in paths where !path.contains("{") {
                guard case .object(let ops) = item else { continue }
                for op in ops.keys where op == "get" {
                    #expect(try await client.execute(uri: path, method: .get).status != .notFound, "\(path)")
                }
            }
        }
        await server.manager.shutdown()
    }

    @Test func badRequestsGetClearErrorsAndTheServerGoesOn() async throws {
        let server = try TestModel.server { $0.maxPromptBytes = 100; $0.maxQueuedSessions = 0 }
        try await Self.app(server).test(.router) { client in
            let cases: [(String, HTTPResponse.Status, String)] = [
                ("{\"prompt\": ", .badRequest, "bad_json"),
                ("[1, 2]", .badRequest, "bad_request"),
                ("{\"prompt\": \"a cat\", \"options\": {\"speed\": 2}}", .badRequest, "unknown_option"),
                ("{\"prompt\": \"a cat\", \"colour\": 1}", .badRequest, "unknown_field"),
                ("{\"prompt\": \"" + String(repeating: "long ", count: 50) + "\"}", .contentTooLarge, "prompt_too_long"),
                ("{\"prompt\": \"   \"}", .badRequest, "bad_request"),
                ("{\"prompt\": 3}", .badRequest, "bad_request"),
                ("{\"prompt\": \"a cat\", \"seed\": -1}", .badRequest, "bad_request"),
                ("{\"prompt\": \"a cat\", \"options\": {\"width\": 50}}", .badRequest, "bad_request"),
                ("{\"prompt\": \"a cat\", \"options\": {\"seconds\": \"long\"}}", .badRequest, "bad_request"),
                ("{\"prompt\": \"" + String(repeating: "x", count: 20_000) + "\"}", .contentTooLarge, "body_too_large"),
            ]
            for (body, status, code) in cases {
                let response = try await Self.post(client, body)
                #expect(response.status == status, "\(body.prefix(60))")
                #expect(try Self.json(response)["error"]?["code"]?.string == code, "\(body.prefix(60))")
            }
            // One slot, no queue: the second session is refused with 429 while the first runs.
            let first = try await Self.post(client, "{\"prompt\": \"a cat\", \"options\": {\"seconds\": 60, \"record\": false}}")
            #expect(first.status == .created)
            let second = try await Self.post(client, "{\"prompt\": \"a dog\"}")
            #expect(second.status == .tooManyRequests)
            #expect(try Self.json(second)["error"]?["code"] == "too_many_sessions")
            let unknown = try await client.execute(uri: "/v1/sessions/nope", method: .get)
            #expect(unknown.status == .notFound)
            // Still serving.
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
            let id = try #require(try Self.json(first)["id"]?.string)
            #expect(try await client.execute(uri: "/v1/sessions/\(id)", method: .delete).status == .noContent)
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("reel_sessions_rejected_total 1\n"))
            #expect(metrics.contains("reel_client_errors_total 13\n"))
        }
        #expect(await server.manager.counts.total == 0)
        await server.manager.shutdown()
    }

    @Test func sessionRunsRecordsAndIsDeleted() async throws {
        let server = try TestModel.server()
        try await Self.app(server).test(.router) { client in
            let created = try await Self.post(client, "{\"prompt\": \"a red circle\", \"seed\": 3, \"options\": {\"seconds\": 1.5}}")
            #expect(created.status == .created)
            let id = try #require(try Self.json(created)["id"]?.string)
            #expect(created.headers[.location] == "/v1/sessions/\(id)")
            var status = JSON.null
            let done = try await eventually {
                status = try Self.json(try await client.execute(uri: "/v1/sessions/\(id)", method: .get))
                return status["state"] == "finished" || status["state"] == "failed"
            }
            #expect(done)
            #expect(status["state"] == "finished", "\(status.text)")
            // 1.5 s at 16 fps = 24 frames -> 9 latent frames -> 3 blocks: 9 + 12 + 12 frames.
            #expect(status["frames"] == 33 && status["blocks"] == 3)
            let video = try await client.execute(uri: "/v1/sessions/\(id)/video", method: .get)
            #expect(video.status == .ok)
            #expect(video.body.readableBytes > 100)
            let type = video.headers[.contentType]
            #expect(type == "video/mp4" || type == "video/x-yuv4mpeg")
            let list = try Self.json(try await client.execute(uri: "/v1/sessions", method: .get))
            guard case .array(let sessions) = try #require(list["sessions"]) else { Issue.record("no list"); return }
            #expect(sessions.map { $0["id"] } == [.string(id)])
            #expect(try await client.execute(uri: "/v1/sessions/\(id)", method: .delete).status == .noContent)
            #expect(try await client.execute(uri: "/v1/sessions/\(id)", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/v1/sessions/\(id)/video", method: .get).status == .notFound)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: server.config.recordingFolder).isEmpty)
        await server.manager.shutdown()
    }

    @Test func idleSessionsAreReclaimedAndQueuedOnesStartInOrder() async throws {
        let server = try TestModel.server { $0.idleTimeout = .milliseconds(50) }
        let manager = server.manager
        let request = SessionRequest(prompt: "a cat", seed: 0, width: 48, height: 32, fps: 16, seconds: 0.5, quality: 80, record: false)
        let a = try await manager.create(request), b = try await manager.create(request)
        #expect(b.state == .queued)
        #expect(b.statusMessage().queuePosition == 1)
        #expect(await eventually { a.state == .finished && b.state == .finished })
        await manager.reap(now: .now + .seconds(1))
        #expect(await manager.counts.total == 0)
        #expect(manager.metrics.value("reel_sessions_reclaimed_total") == 2)
    }
}
