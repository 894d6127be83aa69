import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWebSocket
import HummingbirdWSClient
import HummingbirdWSTesting
import Logging
import ReelCore
import Testing
@testable import ReelServer

/// `AccessPolicy` on a server: the API key, origins, per-client rates; HTTP in process, WebSocket upgrades on a live
/// loopback server.
@Suite struct AccessTests {
    static let key = "s3cret-key_0123456789"

    static func server(_ edit: (inout AccessPolicy) -> Void = { _ in }) throws -> ReelServer {
        try TestModel.server { config in
            config.access.apiKey = key
            edit(&config.access)
        }
    }

    static func get(_ client: some TestClientProtocol, _ uri: String, _ headers: HTTPFields = [:]) async throws -> TestResponse {
        try await client.execute(uri: uri, method: .get, headers: headers)
    }

    @Test func keyComparisonAndHeaders() {
        #expect(AccessPolicy.constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        #expect(!AccessPolicy.constantTimeEqual(Array("abd".utf8), Array("abc".utf8)))
        #expect(!AccessPolicy.constantTimeEqual(Array("ab".utf8), Array("abc".utf8)))
        #expect(!AccessPolicy.constantTimeEqual(Array("abcabc".utf8), Array("abc".utf8)), "a repeated key is not the key")
        #expect(!AccessPolicy.constantTimeEqual([], Array("abc".utf8)))
        #expect(AccessMiddleware.bearer("Bearer abc") == "abc" && AccessMiddleware.bearer("bearer  abc ") == "abc")
        #expect(AccessMiddleware.bearer("Basic abc") == nil && AccessMiddleware.bearer("Bearer ") == nil)
        #expect(AccessPolicy.isSameOrigin("http://127.0.0.1:8080", host: "127.0.0.1:8080"))
        #expect(AccessPolicy.isSameOrigin("https://Reel.example.com", host: "reel.example.com"))
        #expect(!AccessPolicy.isSameOrigin("http://127.0.0.1:8081", host: "127.0.0.1:8080"))
        #expect(!AccessPolicy.isSameOrigin("null", host: "127.0.0.1:8080"))
    }

    @Test func rateLimiterAllowsABurstThenTheRate() {
        let limiter = ClientRateLimiter(rate: 10, burstSeconds: 2)
        let t0 = ContinuousClock.now
        #expect((0..<20).allSatisfy { _ in limiter.take("a", now: t0) }, "a burst of two seconds' worth")
        #expect(!limiter.take("a", now: t0))
        #expect(limiter.take("b", now: t0), "clients are counted apart")
        #expect(limiter.take("a", now: t0 + .milliseconds(100)), "a tenth of a second later, one more")
        #expect(!limiter.take("a", now: t0 + .milliseconds(110)))
        #expect(ClientRateLimiter(rate: 0, burstSeconds: 1).take("a", now: t0), "rate 0: no limit")
    }

    @Test func keyGuardsTheAPIAndMetricsNotThePageOrProbes() async throws {
        let server = try Self.server()
        let bearer: HTTPFields = [.authorization: "Bearer \(Self.key)"]
        try await HTTPAPITests.app(server).test(.router) { client in
            for open in ["/", "/app.js", "/app.css", "/healthz", "/openapi.json"] {
                #expect(try await Self.get(client, open).status == .ok, "\(open) needs no key")
            }
            for path in ["/v1/sessions", "/metrics", "/v1/sessions/0123/video"] {
                let refused = try await Self.get(client, path)
                #expect(refused.status == .unauthorized, "\(path)")
                #expect(refused.headers[.wwwAuthenticate] == "Bearer realm=\"reel\"")
                #expect(try HTTPAPITests.json(refused)["error"]?["code"] == "unauthorized")
            }
            let wrong = try await Self.get(client, "/v1/sessions", [.authorization: "Bearer \(Self.key)x"])
            #expect(wrong.status == .unauthorized)
            #expect(try HTTPAPITests.json(wrong)["error"]?["message"] == "the API key is wrong")
            #expect(!String(buffer: wrong.body).contains(Self.key), "the key is never echoed")
            #expect(try await Self.get(client, "/v1/sessions?key=\(Self.key)").status == .unauthorized,
                    "the key parameter is the WebSocket's only")
            #expect(try await Self.get(client, "/v1/sessions", bearer).status == .ok)
            #expect(try await Self.get(client, "/metrics", bearer).status == .ok)
            let created = try await client.execute(uri: "/v1/sessions", method: .post,
                                                   headers: bearer + [.contentType: "application/json"],
                                                   body: ByteBuffer(string: "{\"prompt\": \"a cat\", \"options\": {\"seconds\": 0.5}}"))
            #expect(created.status == .created)
            let metrics = String(buffer: try await Self.get(client, "/metrics", bearer).body)
            #expect(metrics.contains("reel_requests_unauthorized_total 5\n"), "\(metrics)")
        }
        await server.manager.shutdown()

        let open = try Self.server { $0.metricsOpen = true }
        try await HTTPAPITests.app(open).test(.router) { client in
            let metrics = try await Self.get(client, "/metrics"), api = try await Self.get(client, "/v1/sessions")
            #expect(metrics.status == .ok, "--metrics-open")
            #expect(api.status == .unauthorized)
        }
        await open.manager.shutdown()
    }

    @Test func originsAreCheckedAndCORSAnswered() async throws {
        let server = try Self.server { $0.allowedOrigins = ["https://studio.example.com"] }
        let bearer: HTTPFields = [.authorization: "Bearer \(Self.key)"]
        try await HTTPAPITests.app(server).test(.router) { client in
            let foreign = try await Self.get(client, "/v1/sessions", bearer + [.origin: "https://evil.example.com"])
            #expect(foreign.status == .forbidden)
            #expect(try HTTPAPITests.json(foreign)["error"]?["code"] == "origin_not_allowed")
            #expect(try await Self.get(client, "/healthz", [.origin: "https://evil.example.com"]).status == .forbidden)
            let allowed = try await Self.get(client, "/v1/sessions", bearer + [.origin: "https://studio.example.com"])
            #expect(allowed.status == .ok)
            #expect(allowed.headers[.accessControlAllowOrigin] == "https://studio.example.com")
            // A preflight carries no key; it is answered with what the API accepts.
            let preflight = try await client.execute(uri: "/v1/sessions", method: .options, headers: [
                .origin: "https://studio.example.com", .accessControlRequestMethod: "POST",
                .accessControlRequestHeaders: "authorization, content-type"])
            #expect(preflight.status == .noContent)
            #expect(preflight.headers[.accessControlAllowHeaders] == "Authorization, Content-Type")
            #expect(preflight.headers[.accessControlAllowOrigin] == "https://studio.example.com")
            // An error answer to an allowed origin carries CORS too, so that its page can read it.
            let refused = try await Self.get(client, "/v1/sessions", [.origin: "https://studio.example.com"])
            #expect(refused.status == .unauthorized && refused.headers[.accessControlAllowOrigin] == "https://studio.example.com")
            let missing = try await Self.get(client, "/v1/sessions/nope", bearer + [.origin: "https://studio.example.com"])
            #expect(missing.status == .notFound && missing.headers[.accessControlAllowOrigin] == "https://studio.example.com")
        }
        await server.manager.shutdown()
    }

    @Test func requestsOverTheRateGet429() async throws {
        // A burst of 4 and next to no refill, so that a slow machine cannot earn requests back during the test.
        let server = try TestModel.server { $0.access.requestsPerSecond = 0.001; $0.access.burstSeconds = 4000 }
        try await HTTPAPITests.app(server).test(.router) { client in
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<6 { statuses.append(try await Self.get(client, "/healthz").status) }
            #expect(statuses.prefix(4).allSatisfy { $0 == .ok }, "a burst of 4: \(statuses)")
            #expect(statuses.last == .tooManyRequests)
            let limited = try await Self.get(client, "/healthz")
            #expect(limited.headers[.retryAfter] == "1")
            #expect(try HTTPAPITests.json(limited)["error"]?["code"] == "rate_limited")
            #expect(server.manager.metrics.value("reel_requests_rate_limited_total") >= 3)
        }
        await server.manager.shutdown()
    }

    /// Whether a WebSocket to `path` opens (its handler runs) with these headers.
    static func opens(_ client: some TestClientProtocol, _ path: String, _ headers: HTTPFields = [:]) async -> Bool {
        var config = WebSocketClientConfiguration()
        config.additionalHeaders = headers
        let ran = Flag()
        _ = try? await client.ws(path, configuration: config) { _, outbound, _ in
            ran.set()
            try await outbound.close(.normalClosure, reason: nil)
        }
        return ran.value
    }

    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var raised = false
        var value: Bool { lock.withLock { raised } }
        func set() { lock.withLock { raised = true } }
    }

    @Test func webSocketUpgradesNeedTheKeyAndAnAllowedOrigin() async throws {
        // Two control messages a burst and next to no refill (the test may run slowly).
        let server = try Self.server { $0.messagesPerSecond = 0.001; $0.burstSeconds = 2000 }
        try await HTTPAPITests.app(server).test(.live) { client in
            let port = try #require(client.port)
            #expect(await !Self.opens(client, "/v1/ws"), "no key")
            #expect(await !Self.opens(client, "/v1/ws?key=wrong"))
            #expect(await Self.opens(client, "/v1/ws", [.authorization: "Bearer \(Self.key)"]))
            #expect(await !Self.opens(client, "/v1/ws?key=\(Self.key)", [.origin: "https://evil.example.com"]))
            #expect(await Self.opens(client, "/v1/ws?key=\(Self.key)", [.origin: "http://localhost:\(port)"]),
                    "the server's own origin")
            // With the key parameter: a session streams; control messages beyond the client's rate are refused.
            try await client.ws("/v1/ws?key=\(Self.key)") { inbound, outbound, _ in
                var messages = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                let seen = WebSocketTests.Seen()
                try await outbound.write(.text("{\"type\": \"start\", \"prompt\": \"a cat\", \"options\": {\"seconds\": 1}}"))
                try await WebSocketTests.read(&messages, into: seen) { $0.frames.count >= 4 }
                #expect(seen.frames.count >= 4)
                for _ in 0..<3 { try await outbound.write(.text("{\"type\": \"resume\"}")) }
                try await WebSocketTests.read(&messages, into: seen) { s in s.messages.contains { $0["type"] == "error" } }
                let errors = seen.messages.filter { $0["type"] == "error" }
                #expect(errors.first?["code"] == "rate_limited", "two messages a burst: the start and one resume")
                try await outbound.close(.normalClosure, reason: nil)
            }
        }
        #expect(server.manager.metrics.value("reel_requests_unauthorized_total") >= 2)
        await server.manager.shutdown()
    }
}
