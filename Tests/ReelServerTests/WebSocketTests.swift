import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWebSocket
import HummingbirdWSTesting
import Logging
import ReelCore
import Testing
import HummingbirdWSClient
@testable import ReelServer

/// Weak references to sessions seen during a test.
final class WeakSessions: @unchecked Sendable {
    private struct Weak { weak var session: Session? }
    private let lock = NSLock()
    private var seen: [ObjectIdentifier: Weak] = [:]
    func add(_ sessions: [Session]) {
        lock.withLock { for s in sessions where seen[ObjectIdentifier(s)] == nil { seen[ObjectIdentifier(s)] = Weak(session: s) } }
    }
    var count: Int { lock.withLock { seen.count } }
    var alive: Int { lock.withLock { seen.values.filter { $0.session != nil }.count } }
}

/// The WebSocket API on a live loopback server.
@Suite struct WebSocketTests {
    /// What a client saw.
    final class Seen: @unchecked Sendable {
        private let lock = NSLock()
        private var _messages: [JSON] = []
        private var _frames: [(block: Int, frame: Int, promptIndex: Int, bytes: Int)] = []
        var messages: [JSON] { lock.withLock { _messages } }
        var frames: [(block: Int, frame: Int, promptIndex: Int, bytes: Int)] { lock.withLock { _frames } }
        func add(_ m: JSON) { lock.withLock { _messages.append(m) } }
        func add(frame: [UInt8]) {
            guard let f = FrameMessage.decode(frame) else { return }
            lock.withLock { _frames.append((f.block, f.frame, f.promptIndex, f.jpeg.count)) }
        }
        func states() -> [String] { messages.filter { $0["type"] == "state" || $0["type"] == "session" }.compactMap { $0["state"]?.string } }
    }

    static func text(_ json: JSON) -> WebSocketOutboundWriter.OutboundFrame { .text(json.text) }

    /// Reads until `until` is true for what was seen (or the socket closes).
    static func read(_ inbound: inout WebSocketInboundMessageStream.AsyncIterator, into seen: Seen, until: (Seen) -> Bool) async throws {
        while let message = try await inbound.next() {
            switch message {
            case .text(let t): seen.add(try JSON.parse(Data(t.utf8)))
            case .binary(let b): seen.add(frame: Array(b.readableBytesView))
            }
            if until(seen) { return }
        }
    }

    @Test func liveSessionStreamsSwitchesPausesAndStops() async throws {
        let server = try TestModel.server()
        let app = HTTPAPITests.app(server)
        try await app.test(.live) { client in
            try await client.ws("/v1/ws") { stream, outbound, _ in
                var inbound = stream.messages(maxSize: 1 << 20).makeAsyncIterator()
                let seen = Seen()
                // Errors leave the socket open.
                try await outbound.write(.text("{not json"))
                try await outbound.write(Self.text(["type": "pause"]))
                try await outbound.write(Self.text(["type": "start", "prompt": "a cat", "options": ["fps": 16, "colour": 1]]))
                try await outbound.write(Self.text(["type": "dance"]))
                try await outbound.write(Self.text(["type": "start", "prompt": .string(String(repeating: "a cat ", count: 500))]))
                try await outbound.write(.binary(ByteBuffer(bytes: [1, 2, 3])))
                try await Self.read(&inbound, into: seen) { $0.messages.count == 6 }
                #expect(seen.messages.map { $0["code"]?.string } == ["bad_json", "no_session", "unknown_option", "unknown_type",
                                                                     "prompt_too_long", "bad_message"])

                try await outbound.write(Self.text(["type": "start", "prompt": "a red circle", "seed": 5]))
                try await Self.read(&inbound, into: seen) { $0.frames.count >= 21 }
                try await outbound.write(Self.text(["type": "prompt", "prompt": "a green square"]))
                try await Self.read(&inbound, into: seen) { $0.frames.last?.promptIndex == 1 }
                try await outbound.write(Self.text(["type": "pause"]))
                try await Self.read(&inbound, into: seen) { $0.states().last == "paused" }
                try await outbound.write(Self.text(["type": "resume"]))
                try await Self.read(&inbound, into: seen) { $0.states().last == "running" }
                try await outbound.write(Self.text(["type": "stop"]))
                try await Self.read(&inbound, into: seen) { $0.states().last == "finished" }

                let frames = seen.frames
                #expect(frames.map(\.frame) == Array(0..<frames.count), "frames arrive in order, none lost")
                #expect(frames.prefix(9).allSatisfy { $0.block == 0 })
                #expect(frames.allSatisfy { $0.bytes > 100 })
                // Block 0 (3 latent frames: 9 frames) arrives in parts of one latent frame: 1 + 4 + 4.
                let parts = seen.messages.filter { $0["type"] == "block" }
                let first = parts.filter { $0["index"] == 0 }
                #expect(first.map { $0["frames"] } == [1, 4, 4] && first.first?["width"] == 48)
                #expect(first.map { $0["latentFrame"] } == [0, 1, 2])
                #expect(first.map { $0["endsBlock"] } == [false, false, true])
                // The switch took effect at a block boundary and stayed.
                let firstSwitched = try #require(frames.firstIndex { $0.promptIndex == 1 })
                #expect(frames[firstSwitched...].allSatisfy { $0.promptIndex == 1 })
                #expect(frames[firstSwitched].block != frames[firstSwitched - 1].block)
                #expect(seen.messages.contains { $0["type"] == "prompt" && $0["prompt"] == "a green square" })
                let final = try #require(seen.messages.last { $0["type"] == "state" })
                #expect(final["video"]?.string?.hasSuffix("/video") == true)
            }
            #expect(await eventually { await server.manager.counts.total == 0 }, "disconnecting frees the session")
        }
        #expect(server.manager.metrics.value("reel_websockets_open") == 0)
        await server.manager.shutdown()
    }

    /// With one slot, a second client waits with its place reported, and starts when the first leaves.
    @Test func queuedClientIsToldItsPlaceAndStartsWhenTheSlotFrees() async throws {
        let server = try TestModel.server { $0.maxActiveSessions = 1; $0.maxQueuedSessions = 1 }
        let app = HTTPAPITests.app(server)
        try await app.test(.live) { client in
            let firstLeft = AsyncStream<Void>.makeStream()
            async let first = client.ws("/v1/ws") { stream, outbound, _ in
                var inbound = stream.messages(maxSize: 1 << 20).makeAsyncIterator()
                let seen = Seen()
                try await outbound.write(Self.text(["type": "start", "prompt": "first"]))
                try await Self.read(&inbound, into: seen) { $0.frames.count >= 9 }
                for await _ in firstLeft.stream { break }
            }
            try await client.ws("/v1/ws") { stream, outbound, _ in
                var inbound = stream.messages(maxSize: 1 << 20).makeAsyncIterator()
                let seen = Seen()
                #expect(await eventually { await server.manager.counts.active == 1 })
                try await outbound.write(Self.text(["type": "start", "prompt": "second"]))
                try await Self.read(&inbound, into: seen) { $0.messages.contains { $0["queuePosition"] == 1 } }
                #expect(seen.states().first == "queued")
                firstLeft.continuation.yield()
                try await Self.read(&inbound, into: seen) { $0.frames.count >= 9 }
                #expect(seen.states().contains("running"))
            }
            _ = try await first
            #expect(await eventually { await server.manager.counts.total == 0 })
        }
        await server.manager.shutdown()
    }

    /// Many clients on loopback connect, start, switch prompts and disconnect at random points, with
    /// fewer slots than clients (so some queue and some are refused); afterwards no session, socket
    /// or recording is left.
    @Test func boundedLoadLeavesNothingBehind() async throws {
        let server = try TestModel.server { $0.maxActiveSessions = 2; $0.maxQueuedSessions = 4 }
        let app = HTTPAPITests.app(server)
        let refused = Seen()
        // Every session object the manager held, weakly: none may outlive the test (a session owns its
        // generator, KV cache, decoder and task).
        let watched = WeakSessions()
        let watcher = Task {
            while !Task.isCancelled {
                watched.add(await server.manager.all)
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        try await app.test(.live) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<16 {
                    group.addTask {
                        try await client.ws("/v1/ws") { stream, outbound, _ in
                var inbound = stream.messages(maxSize: 1 << 20).makeAsyncIterator()
                            let seen = Seen()
                            try await outbound.write(Self.text(["type": "start", "prompt": .string("scene \(i)"), "seed": .int(i)]))
                            let stopAfter = 1 + i % 4
                            try await Self.read(&inbound, into: seen) { s in
                                s.messages.contains { $0["type"] == "error" } || s.frames.count >= 9 * stopAfter
                            }
                            if let error = seen.messages.first(where: { $0["type"] == "error" }) {
                                refused.add(error)
                                return
                            }
                            try await outbound.write(Self.text(["type": "prompt", "prompt": .string("scene \(i) again")]))
                            if i % 3 == 0 { try await outbound.write(Self.text(["type": "stop"])) }
                            if i % 2 == 0 {
                                try await Self.read(&inbound, into: seen) { s in s.frames.count >= 9 * stopAfter + 12 || s.states().last == "finished" }
                            }
                            // Leaving the handler closes the socket.
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(await eventually { await server.manager.counts.total == 0 }, "no session is left")
        }
        watcher.cancel()
        await watcher.value
        #expect(watched.count > 3)
        #expect(await eventually(120) { watched.alive == 0 }, "\(watched.alive) session objects still alive")
        #expect(refused.messages.allSatisfy { $0["code"] == "too_many_sessions" })
        #expect(server.manager.metrics.value("reel_websockets_open") == 0)
        #expect(server.manager.metrics.value("reel_sessions_created_total") + server.manager.metrics.value("reel_sessions_rejected_total") == 16)
        #expect(try FileManager.default.contentsOfDirectory(atPath: server.config.recordingFolder).isEmpty)
        await server.manager.shutdown()
    }
}
