import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWebSocket
import HummingbirdWSTesting
import HummingbirdWSClient
import ReelCore
import Testing
@testable import ReelServer

/// A failing session tells its client and leaves the others running; every session is accounted for in /metrics.
@Suite struct FailureAccountingTests {
    typealias Seen = WebSocketTests.Seen

    /// The identities /metrics promises (`Metrics`), at a quiet moment.
    static func expectAccounted(_ manager: SessionManager, _ context: String,
                                sourceLocation: SourceLocation = #_sourceLocation) async {
        let m = manager.metrics
        let (held, active, queued) = await manager.counts
        let created = m.value("reel_sessions_created_total")
        #expect(created == m.value("reel_sessions_ended_total") + Double(active + queued),
                "\(context): created = ended + active + queued", sourceLocation: sourceLocation)
        #expect(created == m.value("reel_sessions_removed_total") + Double(held),
                "\(context): created = removed + held", sourceLocation: sourceLocation)
        #expect(m.value("reel_sessions") == Double(held), sourceLocation: sourceLocation)
    }

    /// Client B's session runs out of device memory (injected) at its second block while client A's runs:
    /// B is told (`out_of_memory`, then its `failed` state with the error), its socket stays open and takes a new
    /// session, and A's video comes out whole.
    @Test func outOfMemoryTellsItsClientAndOthersRunOn() async throws {
        let server = try TestModel.server {
            $0.maxActiveSessions = 2
            $0.faults = FaultInjection(outOfMemoryEvery: 2, atBlock: 1)
        }
        let app = HTTPAPITests.app(server)
        let a = Seen(), b = Seen()
        try await app.test(.live) { client in
            try await client.ws("/v1/ws") { streamA, outboundA, _ in
                var inboundA = streamA.messages(maxSize: 1 << 20).makeAsyncIterator()
                // 2 s at 16 fps: 32 frames -> 9 latent frames -> 3 blocks, 33 frames.
                try await outboundA.write(WebSocketTests.text(["type": "start", "prompt": "a red circle",
                                                               "options": ["seconds": 2]]))
                try await WebSocketTests.read(&inboundA, into: a) { !$0.states().isEmpty }
                // The second session created: the injected fault strikes it.
                try await client.ws("/v1/ws") { streamB, outboundB, _ in
                    var inboundB = streamB.messages(maxSize: 1 << 20).makeAsyncIterator()
                    try await outboundB.write(WebSocketTests.text(["type": "start", "prompt": "a blue square",
                                                                   "options": ["seconds": 2]]))
                    try await WebSocketTests.read(&inboundB, into: b) { $0.states().last == "failed" }
                    // The socket is still usable: a third session (not struck) runs.
                    try await outboundB.write(WebSocketTests.text(["type": "start", "prompt": "a green square",
                                                                   "options": ["seconds": 1]]))
                    try await WebSocketTests.read(&inboundB, into: b) { $0.states().last == "finished" }
                }
                try await WebSocketTests.read(&inboundA, into: a) { $0.states().last == "finished" }
            }
            #expect(await eventually { await server.manager.counts.total == 0 })
        }
        let error = try #require(b.messages.first { $0["type"] == "error" })
        #expect(error["code"] == "out_of_memory")
        #expect(error["message"]?.string?.contains("out of memory") == true, "\(error.text)")
        let failed = try #require(b.messages.first { $0["state"] == "failed" })
        #expect(failed["error"]?.string?.contains("out of memory") == true)
        #expect(failed["blocks"] == 1, "it failed at its second block")
        let errorAt = try #require(b.messages.firstIndex { $0["type"] == "error" })
        let failedAt = try #require(b.messages.firstIndex { $0["state"] == "failed" })
        #expect(errorAt < failedAt, "the error comes before the failed state")
        #expect(b.states().last == "finished", "the same socket ran a new session")
        #expect(a.states().last == "finished" && a.states().contains("running"))
        #expect(a.frames.count == 33 && a.frames.map(\.frame) == Array(0..<33), "A's video is whole")
        #expect(!a.messages.contains { $0["type"] == "error" })

        let m = server.manager.metrics
        #expect(m.value(Metrics.series("reel_sessions_failed_total", "cause", "out_of_memory")) == 1)
        #expect(m.value("reel_sessions_failed_total") == 1)
        #expect(m.value(Metrics.series("reel_sessions_ended_total", "outcome", "failed")) == 1)
        #expect(m.value(Metrics.series("reel_sessions_ended_total", "outcome", "finished")) == 2)
        #expect(m.value(Metrics.series("reel_sessions_removed_total", "reason", "replaced")) == 1)
        #expect(m.value(Metrics.series("reel_sessions_removed_total", "reason", "disconnected")) == 2)
        #expect(m.value("reel_websockets_opened_total") == 2 && m.value("reel_websockets_open") == 0)
        await Self.expectAccounted(server.manager, "after the sockets closed")
        await server.manager.shutdown()
    }

    /// Each way a session ends and leaves is counted once: cancelled while queued (stopped, deleted), finished,
    /// stopped, failed (injected), reclaimed, and removed at shutdown.
    @Test func everySessionIsAccountedFor() async throws {
        let server = try TestModel.server {
            $0.maxActiveSessions = 1
            $0.idleTimeout = .milliseconds(50)
            $0.faults = FaultInjection(outOfMemoryEvery: 5, atBlock: 0)
        }
        let manager = server.manager
        func request(seconds: Double?) -> SessionRequest {
            SessionRequest(prompt: "a cat", seed: 0, width: 48, height: 32, fps: 16, seconds: seconds, quality: 80,
                           record: false)
        }
        let s1 = try await manager.create(request(seconds: 0.5))           // runs, finishes
        let s2 = try await manager.create(request(seconds: 0.5))           // queued, then deleted
        let s3 = try await manager.create(request(seconds: 0.5))           // queued, then stopped
        await Self.expectAccounted(manager, "one running, two queued")
        #expect(s2.state == .queued && s3.state == .queued)
        await manager.stop(s3.id)
        await manager.remove(s2.id, reason: .deleted)
        #expect(await eventually { s1.state == .finished })
        #expect(await eventually { await manager.counts.active == 0 })
        await Self.expectAccounted(manager, "s1 finished, s2 and s3 cancelled")
        await manager.reap(now: .now + .seconds(1))                        // s1, s3 reclaimed

        let s4 = try await manager.create(request(seconds: nil))           // runs until stopped
        #expect(await eventually { s4.statusMessage().blocks >= 1 })
        await manager.stop(s4.id)
        #expect(await eventually { s4.state == .finished })
        await manager.remove(s4.id, reason: .deleted)
        let s5 = try await manager.create(request(seconds: nil))           // the 5th: out of memory at once
        #expect(await eventually { s5.state == .failed })
        #expect(s5.statusMessage().error?.contains("out of memory") == true)
        let s6 = try await manager.create(request(seconds: nil))
        #expect(await eventually { s6.state == .running })
        await Self.expectAccounted(manager, "s5 failed, s6 running")
        await manager.shutdown()
        await Self.expectAccounted(manager, "after shutdown")

        let m = manager.metrics
        let ended = { m.value(Metrics.series("reel_sessions_ended_total", "outcome", $0)) }
        let removed = { m.value(Metrics.series("reel_sessions_removed_total", "reason", $0)) }
        #expect(m.value("reel_sessions_created_total") == 6 && m.value("reel_sessions_started_total") == 4)
        #expect([ended("finished"), ended("stopped"), ended("failed"), ended("cancelled")] == [1, 2, 1, 2])
        #expect([removed("deleted"), removed("reclaimed"), removed("shutdown"), removed("disconnected")]
                    == [2, 2, 2, 0])
        #expect(m.value(Metrics.series("reel_sessions_failed_total", "cause", "out_of_memory")) == 1)
        #expect(m.value("reel_sessions_reclaimed_total") == 2)
    }

    /// A watched session the server reclaims is announced to its client before its events end.
    @Test func reclaimedSessionTellsItsClient() async throws {
        let server = try TestModel.server { $0.idleTimeout = .milliseconds(50) }
        let app = HTTPAPITests.app(server)
        let seen = Seen()
        try await app.test(.live) { client in
            try await client.ws("/v1/ws") { stream, outbound, _ in
                var inbound = stream.messages(maxSize: 1 << 20).makeAsyncIterator()
                try await outbound.write(WebSocketTests.text(["type": "start", "prompt": "a cat"]))
                try await WebSocketTests.read(&inbound, into: seen) { $0.frames.count >= 1 }
                try await outbound.write(WebSocketTests.text(["type": "pause"]))
                try await WebSocketTests.read(&inbound, into: seen) { $0.states().last == "paused" }
                #expect(await eventually {
                    await server.manager.reap(now: .now + .seconds(1))
                    return await server.manager.counts.total == 0
                })
                try await WebSocketTests.read(&inbound, into: seen) { $0.messages.contains { $0["type"] == "error" } }
                try await outbound.write(WebSocketTests.text(["type": "resume"]))
                try await WebSocketTests.read(&inbound, into: seen) {
                    $0.messages.filter { $0["type"] == "error" }.count == 2
                }
            }
        }
        let codes = seen.messages.filter { $0["type"] == "error" }.map { $0["code"]?.string }
        #expect(codes == ["session_reclaimed", "no_session"])
        await Self.expectAccounted(server.manager, "after the reclaim")
        await server.manager.shutdown()
    }

    /// Labelled series render under one help and type line, and a bare name sums them.
    @Test func labelledSeriesRenderOnce() {
        let m = Metrics()
        m.ended(.finished); m.ended(.finished); m.ended(.failed)
        m.failed(.outOfMemory)
        let text = m.render()
        #expect(text.components(separatedBy: "# TYPE reel_sessions_ended_total counter").count == 2)
        #expect(text.contains("reel_sessions_ended_total{outcome=\"finished\"} 2\n"))
        #expect(text.contains("reel_sessions_ended_total{outcome=\"cancelled\"} 0\n"))
        #expect(text.contains("reel_sessions_failed_total{cause=\"out_of_memory\"} 1\n"))
        #expect(!text.contains("\nreel_sessions_failed_total 0"), "no unlabelled series beside the labelled ones")
        #expect(m.value("reel_sessions_ended_total") == 3)
        #expect(m.value("reel_sessions_failed_total") == 1)
    }
}

/// Connections the HTTP layer leaves unanswered are closed once idle (each held a descriptor for ever).
@Suite struct IdleConnectionTests {
    /// Sends `bytes` on a fresh loopback connection and returns the seconds until the server closes it (nil: not
    /// within `wait`).
    static func secondsUntilClosed(port: Int, sending bytes: [UInt8], wait: Double) -> Double? {
        MalformedRequestTests.exchange(port: port, sending: bytes, wait: wait).closedAfter
    }

    @Test func unansweredConnectionsAreClosedWhenIdle() async throws {
        let server = try TestModel.server { $0.connectionIdleTimeout = .seconds(1) }
        let app = HTTPAPITests.app(server)
        try await app.test(.live) { client in
            // Raw sockets only: the test client's own keep-alive connection would be closed by the idle timeout too,
            // and its shutdown then fails with "I/O on closed channel" (seen under CI load).
            let port = try #require(client.port)
            for request in ["", "GET /healthz HTTP/1.1\r\nHo", "GET / HTTP/9.9\r\n\r\n"] {
                // A blocking socket read: on a thread of its own, never one of the cooperative pool's.
                let closed = try await onThread { Self.secondsUntilClosed(port: port, sending: Array(request.utf8), wait: 300) }
                #expect(closed != nil, "'\(request)' was held open")
            }
        }
        await server.manager.shutdown()
    }
}
