import Foundation
import ReelCore
import ReelPipeline

/// All sessions of a server: at most `maxActiveSessions` generate at once on each engine (each session with
/// its own KV cache); later ones wait in a FIFO queue whose positions their clients are told; beyond
/// `maxQueuedSessions` requests are refused. Ended and paused sessions untouched for `idleTimeout`
/// are reclaimed, and a watcher that disconnects removes its session.
///
/// Engines are copies of one model, each on a device of its own (`reel serve --session-devices 0,1`) or on a group
/// of devices with its DiT spread over them by sequence parallelism (`--session-devices 0+1,2+3`): a session starts
/// on the engine with the fewest sessions generating (the lowest index among equals) and stays there; /metrics
/// reports each group's sessions and each device's sessions (its engine's) and memory.
public actor SessionManager {
    /// The engines, one per device or group of devices; every engine holds the same model (weights, decoder, encoder).
    public nonisolated let engines: [LoadedModel]
    public nonisolated let config: ServerConfiguration
    public nonisolated let metrics: Metrics
    private var sessions: [String: Session] = [:]
    private var queue: [Session] = []
    /// Sessions generating, by id, with the engine each runs on.
    private var active: [String: Int] = [:]
    private var shuttingDown = false
    /// Sessions created so far (the fault injection counts them).
    private var createdCount = 0
    /// Gives freed memory back after sessions end (`ServerConfiguration.trimsHeapAfterSessions`).
    nonisolated let heapTrimmer = HeapTrimmer()

    /// The first engine's model (what every engine holds).
    public nonisolated var model: LoadedModel { engines[0] }

    public init(model: LoadedModel, config: ServerConfiguration, metrics: Metrics = Metrics()) {
        self.init(engines: [model], config: config, metrics: metrics)
    }

    /// A manager over `engines` (at least one).
    public init(engines: [LoadedModel], config: ServerConfiguration, metrics: Metrics = Metrics()) {
        precondition(!engines.isEmpty, "SessionManager needs at least one engine")
        self.engines = engines
        self.config = config
        self.metrics = metrics
        for name in deviceNames { metrics.set(Metrics.labelled("reel_device_sessions_active", device: name), 0) }
        for name in groupNames { metrics.set(Metrics.labelled("reel_group_sessions_active", group: name), 0) }
    }

    /// Each engine's devices, the DiT's ranks in order (one device for an engine not spread).
    public nonisolated var engineDevices: [[any Device]] {
        engines.map { e in e.dit.parallelism?.communicator.streams.map(\.device) ?? [e.dit.backend.device] }
    }

    /// Every engine's devices ("cuda:1"), engine after engine, as /metrics labels them.
    public nonisolated var deviceNames: [String] { engineDevices.flatMap { $0.map(\.name) } }

    /// Each engine's group of devices ("cuda:0+cuda:1"; "cuda:2" for an engine on one device), as /metrics labels it.
    public nonisolated var groupNames: [String] { engineDevices.map { $0.map(\.name).joined(separator: "+") } }

    /// The engine a generating session runs on (nil when it is queued or over).
    func engine(of id: String) -> Int? { active[id] }

    /// Each engine's device memory in use (where the device keeps count) and the C heap's figures, into the
    /// metrics; /metrics calls it.
    public nonisolated func updateDeviceMemory() {
        for device in engineDevices.joined() {
            if let stats = device.memoryStatistics() {
                metrics.set(Metrics.labelled("reel_device_memory_bytes", device: device.name), Double(stats.inUse))
            }
        }
        if let heap = HeapStatistics.current() {
            metrics.set("reel_heap_in_use_bytes", Double(heap.inUseBytes))
            metrics.set("reel_heap_free_bytes", Double(heap.freeBytes))
        }
    }

    /// Sessions held, active (holding a device slot) and queued.
    public var counts: (total: Int, active: Int, queued: Int) { (sessions.count, active.count, queue.count) }

    func session(_ id: String) -> Session? {
        let s = sessions[id]
        s?.touch()
        return s
    }

    var all: [Session] { sessions.values.sorted { $0.createdAt < $1.createdAt } }

    /// Creates a session and starts it when a slot is free, else queues it.
    func create(_ request: SessionRequest, source: SessionSource? = nil) throws(APIError) -> Session {
        try create(request, source: source, watched: false).session
    }

    /// Creates a session; with `watched`, its events stream is attached before it can produce anything,
    /// so the watcher sees every frame. A session with an input needs a model loaded with its encoder; one the model
    /// cannot make (its size, a LongLive 2.0 model's video input) is refused here, before it queues.
    func create(_ request: SessionRequest, source: SessionSource? = nil,
                watched: Bool) throws(APIError) -> (session: Session, events: AsyncStream<SessionEvent>?) {
        guard !shuttingDown else { throw APIError(.serviceUnavailable, "shutting_down", "the server is shutting down") }
        if let input = request.input, model.makeEncoder == nil {
            throw APIError(.notImplemented, "no_encoder",
                           "this server's model has no encoder, so it takes no \(input.rawValue) input (prompts only)")
        }
        try request.check(for: model.dit.config)
        if let placement = model.placement { try request.checkFits(placement, config: model.dit.config) }
        guard active.count < config.maxActiveSessions * engines.count || queue.count < config.maxQueuedSessions else {
            metrics.add("reel_sessions_rejected_total")
            throw APIError(.tooManyRequests, "too_many_sessions",
                           "\(active.count) sessions are generating and \(queue.count) waiting, the most this server takes; try again later")
        }
        var id: String
        repeat { id = String(format: "%016llx", UInt64.random(in: 0...UInt64.max)) } while sessions[id] != nil
        createdCount += 1
        let session = Session(id: id, request: request, source: source,
                              injectedFault: config.faults.fault(forSession: createdCount))
        let events = watched ? session.watch() : nil
        sessions[id] = session
        queue.append(session)
        metrics.add("reel_sessions_created_total")
        schedule()
        return (session, events)
    }

    /// Stops a session, waits for its generation to end, and forgets it (its recording is deleted).
    func remove(_ id: String, reason: Metrics.RemovalReason) async {
        guard let session = sessions.removeValue(forKey: id) else { return }
        metrics.removed(reason)
        if let i = queue.firstIndex(where: { $0 === session }) {
            queue.remove(at: i)
            session.endWithoutRunning(metrics: metrics)
        }
        session.stop()
        if let notice = notice(removing: id, reason) { session.send(.error(notice)) }
        session.closeWatcher()
        await session.task?.value
        if let path = session.recordingPath { try? FileManager.default.removeItem(atPath: path) }
        schedule()
    }

    /// Stops a session at its next block; it stays (with its recording) until removed or reclaimed.
    func stop(_ id: String) {
        guard let session = sessions[id] else { return }
        if let i = queue.firstIndex(where: { $0 === session }) {
            queue.remove(at: i)
            session.endWithoutRunning(metrics: metrics)
            schedule()
        } else {
            session.stop()
        }
    }

    /// Removes ended or paused sessions idle longer than `idleTimeout`.
    public func reap(now: ContinuousClock.Instant = .now) async {
        let idle = sessions.values.filter { s in
            [.paused, .finished, .failed].contains(s.state) && now - s.lastActivity > config.idleTimeout
        }
        for s in idle {
            metrics.add("reel_sessions_reclaimed_total")
            await remove(s.id, reason: .reclaimed)
        }
    }

    /// Refuses new sessions, removes every session, and removes the recording folder if it is empty.
    public func shutdown() async {
        shuttingDown = true
        for id in Array(sessions.keys) { await remove(id, reason: .shutdown) }
        let folder = config.recordingFolder
        if (try? FileManager.default.contentsOfDirectory(atPath: folder))?.isEmpty == true {
            try? FileManager.default.removeItem(atPath: folder)
        }
    }

    /// What a watcher is told when its session is removed by the server, not by itself.
    private func notice(removing id: String, _ reason: Metrics.RemovalReason) -> APIError? {
        switch reason {
        case .reclaimed:
            APIError(.gone, "session_reclaimed",
                     "session \(id) was idle for more than \(config.idleTimeout) and was removed; start a new one")
        case .deleted: APIError(.gone, "session_deleted", "session \(id) was deleted (DELETE /v1/sessions/\(id))")
        case .shutdown: APIError(.serviceUnavailable, "shutting_down", "the server is shutting down")
        case .disconnected, .replaced: nil
        }
    }

    private func generationEnded(_ session: Session) {
        active.removeValue(forKey: session.id)
        schedule()
        // The session's pipeline (KV cache, decoder state, frames) is released by now, but for a stage still
        // finishing its block in flight: what that lets go of soon after, the next session's trim takes.
        if config.trimsHeapAfterSessions { heapTrimmer.request() }
    }

    /// The engine with the fewest sessions generating and a free slot (the lowest index among equals), or nil.
    private func leastLoadedEngine() -> Int? {
        var load = [Int](repeating: 0, count: engines.count)
        for engine in active.values { load[engine] += 1 }
        return load.indices.filter { load[$0] < config.maxActiveSessions }.min { load[$0] < load[$1] }
    }

    /// Starts queued sessions while slots are free and tells the others their place.
    private func schedule() {
        while !queue.isEmpty, !shuttingDown, let engine = leastLoadedEngine() {
            let session = queue.removeFirst()
            active[session.id] = engine
            session.markStarted()
            metrics.add("reel_sessions_started_total")
            metrics.add(Metrics.labelled("reel_group_sessions_started_total", group: groupNames[engine]))
            for device in engineDevices[engine] {
                metrics.add(Metrics.labelled("reel_device_sessions_started_total", device: device.name))
            }
            let (model, config, metrics) = (engines[engine], self.config, self.metrics)
            session.task = Task {
                await session.run(model: model, config: config, metrics: metrics)
                self.generationEnded(session)
            }
        }
        for (i, s) in queue.enumerated() { s.setQueuePosition(i + 1) }
        for (index, devices) in engineDevices.enumerated() {
            let load = Double(active.values.filter { $0 == index }.count)
            metrics.set(Metrics.labelled("reel_group_sessions_active", group: groupNames[index]), load)
            for device in devices { metrics.set(Metrics.labelled("reel_device_sessions_active", device: device.name), load) }
        }
        metrics.set("reel_sessions_active", Double(active.count))
        metrics.set("reel_sessions_queued", Double(queue.count))
        metrics.set("reel_sessions", Double(sessions.count))
    }
}
