import Foundation
import Logging
import ServiceLifecycle
import Testing
@testable import ReelServer

/// Sessions share the weights but nothing else: two sessions generating at once make exactly the
/// frames each makes alone, and a prompt switch changes only its own session.
@Suite struct SessionTests {
    /// The JPEG frames a watched session sends, acknowledging each block (with its last part) as a client would.
    static func frames(of created: (session: Session, events: AsyncStream<SessionEvent>?)) async -> [[UInt8]] {
        let session = created.session
        var out: [[UInt8]] = []
        for await event in created.events! {
            if case let .block(_, frames, endsBlock) = event {
                out += frames
                if endsBlock { session.delivered() }
            }
            if [.finished, .failed].contains(session.state), case .message = event { break }
        }
        return out
    }

    @Test func concurrentSessionsMatchSessionsRunAlone() async throws {
        let manager = SessionManager(model: try TestModel.load(), config: TestModel.config { $0.maxActiveSessions = 2 })
        func request(_ prompt: String, seed: UInt64) -> SessionRequest {
            SessionRequest(prompt: prompt, seed: seed, width: 48, height: 32, fps: 16, seconds: 2, quality: 90, record: false)
        }
        let alone = try await manager.create(request("a red circle", seed: 4), watched: true)
        let aloneFrames = await Self.frames(of: alone)
        let aloneOther = try await manager.create(request("a blue square", seed: 9), watched: true)
        let aloneOtherFrames = await Self.frames(of: aloneOther)

        let a = try await manager.create(request("a red circle", seed: 4), watched: true)
        let b = try await manager.create(request("a blue square", seed: 9), watched: true)
        async let fa = Self.frames(of: a)
        async let fb = Self.frames(of: b)
        let (framesA, framesB) = await (fa, fb)
        #expect(a.session.state == .finished && b.session.state == .finished)
        #expect(framesA.count == 33 && framesB.count == 33)
        #expect(framesA == aloneFrames, "a session's frames do not depend on another running beside it")
        #expect(framesB == aloneOtherFrames)
        #expect(framesA != framesB)
        await manager.shutdown()
    }
}

/// swift-service-lifecycle's graceful shutdown stops running sessions and ends the server.
@Suite struct ShutdownTests {
    @Test func gracefulShutdownStopsSessionsAndEnds() async throws {
        let server = try TestModel.server()
        let group = server.serviceGroup(host: "127.0.0.1", port: 0, logger: Logger(label: "test"), signals: [])
        let running = Task { try await group.run() }
        // A live session (no length) runs until something stops it.
        let live = SessionRequest(prompt: "a cat", seed: 0, width: 48, height: 32, fps: 16, seconds: nil, quality: 80, record: true)
        let session = try await server.manager.create(live)
        #expect(await eventually { session.statusMessage().blocks >= 2 })
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(session.state == .finished)
        #expect(await server.manager.counts.total == 0)
        await #expect(throws: APIError.self) { try await server.manager.create(live) }
        #expect(!FileManager.default.fileExists(atPath: server.config.recordingFolder))
    }
}
