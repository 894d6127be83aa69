import Foundation
import Testing
import ReelCore
import ReelCPU
@testable import ReelServer

/// Sessions spread over engines on two devices (in-process CPU devices standing for GPUs): each new session
/// goes to the least busy engine, a session makes the same frames on either, and /metrics reports each
/// device's sessions.
@Suite struct PlacementTests {
    @Test func sessionsGoToTheLeastBusyDeviceAndReportPerDeviceLoad() async throws {
        let engines = try (0..<2).map { try TestModel.make(on: CPUBackend(threads: 1, gemm: .own, device: CPUDevice(ordinal: $0))) }
        let manager = SessionManager(engines: engines, config: TestModel.config { $0.maxActiveSessions = 1 })
        #expect(manager.deviceNames == ["cpu:0", "cpu:1"])
        let request = SessionRequest(prompt: "a red circle", seed: 4, width: 48, height: 32, fps: 16, seconds: 2, quality: 90,
                                     record: false)
        let a = try await manager.create(request, watched: true)
        let b = try await manager.create(request, watched: true)
        let c = try await manager.create(request, watched: true)
        #expect(await manager.engine(of: a.session.id) == 0)
        #expect(await manager.engine(of: b.session.id) == 1)
        #expect(await manager.engine(of: c.session.id) == nil)          // both devices full: queued
        let counts = await manager.counts
        #expect(counts.active == 2 && counts.queued == 1)
        let metrics = manager.metrics
        #expect(metrics.value(Metrics.labelled("reel_device_sessions_active", device: "cpu:0")) == 1)
        #expect(metrics.value(Metrics.labelled("reel_device_sessions_active", device: "cpu:1")) == 1)

        async let fa = SessionTests.frames(of: a)
        async let fb = SessionTests.frames(of: b)
        let (framesA, framesB) = await (fa, fb)
        let framesC = await SessionTests.frames(of: c)
        #expect(framesA.count == 33 && framesA == framesB && framesC == framesA,
                "the same request makes the same frames on either device")
        let started = ["cpu:0", "cpu:1"].map { metrics.value(Metrics.labelled("reel_device_sessions_started_total", device: $0)) }
        #expect(started.reduce(0, +) == 3)
        #expect(await eventually { metrics.value(Metrics.labelled("reel_device_sessions_active", device: "cpu:0")) == 0
                                   && metrics.value(Metrics.labelled("reel_device_sessions_active", device: "cpu:1")) == 0 })

        let text = metrics.render()
        #expect(text.contains("reel_device_sessions_active{device=\"cpu:1\"} 0\n"))
        #expect(text.components(separatedBy: "# TYPE reel_device_sessions_active gauge").count == 2, "one TYPE line a family")
        #expect(!text.contains("reel_device_sessions_active 0"), "no unlabelled series of a per-device family")
        await manager.shutdown()
    }

    /// `--session-devices 0+1,2+3`: two engines, each with its DiT spread over two CPU devices by sequence parallelism.
    /// Sessions go to the least busy group; a group's session makes the one-device engine's frames bit for bit (a
    /// session with another seed does not: the comparison can fail); /metrics reports each group and each device.
    @Test func groupsSpreadTheirDiTAndReportPerGroupAndDeviceLoad() async throws {
        let engines = try [[0, 1], [2, 3]].map { ordinals in
            try TestModel.make(spreadOver: try CPUCommunicator(streams: ordinals.map {
                CPUBackend(threads: 1, gemm: .own, device: CPUDevice(ordinal: $0))
            }))
        }
        let manager = SessionManager(engines: engines, config: TestModel.config { $0.maxActiveSessions = 1 })
        #expect(manager.deviceNames == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"])
        #expect(manager.groupNames == ["cpu:0+cpu:1", "cpu:2+cpu:3"])
        var request = SessionRequest(prompt: "a red circle", seed: 4, width: 48, height: 32, fps: 16, seconds: 2, quality: 90,
                                     record: false)
        let a = try await manager.create(request, watched: true)
        let b = try await manager.create(request, watched: true)
        let c = try await manager.create(request, watched: true)
        #expect(await manager.engine(of: a.session.id) == 0)
        #expect(await manager.engine(of: b.session.id) == 1)
        #expect(await manager.engine(of: c.session.id) == nil)          // both groups full: queued
        let metrics = manager.metrics
        for group in manager.groupNames { #expect(metrics.value(Metrics.labelled("reel_group_sessions_active", group: group)) == 1) }
        for device in manager.deviceNames {
            #expect(metrics.value(Metrics.labelled("reel_device_sessions_active", device: device)) == 1, "\(device)")
        }

        async let fa = SessionTests.frames(of: a)
        async let fb = SessionTests.frames(of: b)
        let (framesA, framesB) = await (fa, fb)
        let framesC = await SessionTests.frames(of: c)
        #expect(framesA.count == 33 && framesA == framesB && framesC == framesA, "the same frames on either group")
        #expect(metrics.value(Metrics.labelled("reel_group_sessions_started_total", group: "cpu:0+cpu:1"))
                + metrics.value(Metrics.labelled("reel_group_sessions_started_total", group: "cpu:2+cpu:3")) == 3)
        #expect(metrics.value(Metrics.labelled("reel_device_sessions_started_total", device: "cpu:1"))
                == metrics.value(Metrics.labelled("reel_group_sessions_started_total", group: "cpu:0+cpu:1")))
        let text = metrics.render()
        #expect(text.contains("reel_group_sessions_active{group=\"cpu:2+cpu:3\"} "))
        #expect(text.components(separatedBy: "# TYPE reel_group_sessions_active gauge").count == 2, "one TYPE line a family")
        await manager.shutdown()

        let single = SessionManager(engines: [try TestModel.load()], config: TestModel.config { $0.maxActiveSessions = 1 })
        let one = await SessionTests.frames(of: try await single.create(request, watched: true))
        request.seed = 5
        let other = await SessionTests.frames(of: try await single.create(request, watched: true))
        #expect(one == framesA, "a group's session makes the one-device engine's frames")
        #expect(other.count == one.count && other != one, "negative control: another seed, other frames")
        await single.shutdown()
    }

    /// Two sessions at once on one group's engine (`--max-sessions 2`): their threads share the group's ranks and
    /// communicator, and each makes the frames it makes alone.
    @Test func twoSessionsShareAGroupsEngine() async throws {
        let engine = try TestModel.make(spreadOver: try CPUCommunicator(streams: [0, 1].map {
            CPUBackend(threads: 1, gemm: .own, device: CPUDevice(ordinal: $0))
        }))
        let manager = SessionManager(engines: [engine], config: TestModel.config { $0.maxActiveSessions = 2 })
        let first = SessionRequest(prompt: "a red circle", seed: 4, width: 48, height: 32, fps: 16, seconds: 2, quality: 90,
                                   record: false)
        var second = first
        second.seed = 6
        let alone = await SessionTests.frames(of: try await manager.create(first, watched: true))
        #expect(await eventually { await manager.counts.active == 0 })
        let a = try await manager.create(first, watched: true), b = try await manager.create(second, watched: true)
        #expect(await manager.engine(of: a.session.id) == 0)
        #expect(await manager.engine(of: b.session.id) == 0)
        async let fa = SessionTests.frames(of: a)
        async let fb = SessionTests.frames(of: b)
        let (together, other) = await (fa, fb)
        #expect(together == alone && other.count == alone.count && other != alone)
        await manager.shutdown()
    }
}
