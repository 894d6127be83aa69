import Foundation
import ReelCore

/// `REEL_PROFILE=1`: the GPU time of every piece of work the CUDA backend enqueues (kernel launches,
/// cuBLASLt GEMMs, cuDNN executions, copies, graph replays), each between a pair of timing events
/// recorded on its stream, with a label; and what the device memory is made of at its peak
/// (`CUDAAllocator`). One per device, shared by its streams; thread-safe.
///
/// Switched off (the default), each enqueue site costs one test of `enabled`: labels are built in
/// autoclosures that are then never called. Switched on, each op costs two `cuEventRecord`s (events
/// come from a pool, recycled as their ops complete), so the figures of a profiled run are a little
/// slower than an unprofiled one: read the table for shares, not for FPS.
///
/// Ops queued while their stream is being captured into a CUDA Graph are not timed (a capturing stream
/// cannot record timing events); the replay of a graph is timed as one op, `graph replay`.
public final class CUDAProfiler: @unchecked Sendable {
    /// Set by `REEL_PROFILE` (any value but empty or `0`), read once.
    public static let enabled: Bool = {
        let v = ProcessInfo.processInfo.environment["REEL_PROFILE"] ?? ""
        return !v.isEmpty && v != "0"
    }()

    /// `REEL_PROFILE=coarse` groups the report's rows by family (gemm, cudnn conv, one per kernel).
    public static let defaultGrouping: ProfileTable.Grouping =
        ProcessInfo.processInfo.environment["REEL_PROFILE"] == "coarse" ? .coarse : .fine

    /// Timed ops kept as events before the completed ones are read and summed (bounds the events alive).
    static let harvestEvery = 4096
    private var nextHarvest = CUDAProfiler.harvestEvery

    private let driver: CUDADriver
    private let context: CUhandle
    private let allocator: CUDAAllocator
    private let lock = NSLock()
    private var pool: [CUhandle] = []
    private struct Pending {
        var stream: UInt
        var label: String
        var start: CUhandle
        var end: CUhandle
        /// `start` is the stream's origin (kept until reset, not recycled).
        var isOrigin: Bool
    }
    private var pending: [Pending] = []
    /// Per stream, the start event of its first timed op since the reset: every time is measured from it.
    private var origins: [UInt: CUhandle] = [:]
    private var order: [UInt] = []
    private var names: [UInt: String] = [:]
    private var sums = ProfileTable()
    private var problem: String?

    init(driver: CUDADriver, context: CUhandle, allocator: CUDAAllocator) {
        self.driver = driver; self.context = context; self.allocator = allocator
    }

    deinit {
        for e in pool + pending.flatMap({ [$0.isOrigin ? nil : $0.start, $0.end] }) + Array(origins.values) where e != nil {
            _ = driver.cuEventDestroy(e)
        }
    }

    /// Names a stream in the report (default: `stream 1`, `stream 2`, ... in order of first op).
    /// Call before the stream's first op after a reset.
    public func name(_ name: String, for backend: CUDABackend) {
        lock.lock(); names[UInt(bitPattern: backend.stream)] = name; lock.unlock()
    }

    /// Drops what was timed so far (call after a warm-up); the next op on each stream is its new origin.
    /// The memory peak is reset with the allocator's (`MemoryReporting.resetPeakMemory`).
    public func reset() {
        lock.lock()
        defer { lock.unlock() }
        for p in pending {
            if !p.isOrigin { pool.append(p.start) }
            pool.append(p.end)
        }
        pool.append(contentsOf: origins.values)
        pending.removeAll()
        nextHarvest = Self.harvestEvery
        origins.removeAll()
        order.removeAll()
        sums = ProfileTable()
        problem = nil
    }

    /// Waits for every timed op and returns the sums so far.
    public func table() throws -> ProfileTable {
        try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
        lock.lock()
        defer { lock.unlock() }
        harvest(wait: true)
        return sums
    }

    /// What the live blocks were at the allocator's peak, per stream and block size.
    public func memoryAtPeak() -> MemoryBreakdown {
        let (peak, counted, bins) = allocator.peakBlocks()
        lock.lock()
        defer { lock.unlock() }
        let unknown = Set(bins.map(\.stream)).subtracting(order).sorted()
        return MemoryBreakdown(peakBytes: peak, snapshotBytes: counted, step: CUDAAllocator.peakCountStep,
                               bins: bins.map { .init(stream: streamName($0.stream, among: order + unknown), blockBytes: $0.size, count: $0.count) })
    }

    /// The time table (waiting for every timed op) followed by the memory at the peak.
    public func report(grouping: ProfileTable.Grouping = CUDAProfiler.defaultGrouping) throws -> String {
        var out = try table().render(grouping: grouping)
        lock.lock()
        if let problem { out += "note: some ops could not be timed: \(problem)\n" }
        lock.unlock()
        return out + memoryAtPeak().render()
    }

    // MARK: Timing

    /// Runs `enqueue` (which queues one op on `stream`) between two timing events.
    func measured<R>(_ stream: CUhandle, _ label: String, _ enqueue: () throws -> R) rethrows -> R {
        var capturing: Int32 = 0
        _ = driver.cuStreamIsCapturing(stream, &capturing)
        guard capturing == 0, let (start, end) = takePair() else { return try enqueue() }
        let startStatus = driver.cuEventRecord(start, stream)
        let result: R
        do { result = try enqueue() } catch {
            lock.lock(); pool += [start, end]; lock.unlock()
            throw error
        }
        let endStatus = driver.cuEventRecord(end, stream)
        let key = UInt(bitPattern: stream)
        lock.lock()
        defer { lock.unlock() }
        guard startStatus == 0 && endStatus == 0 else {
            problem = problem ?? "cuEventRecord: \(driver.error(startStatus != 0 ? startStatus : endStatus, label))"
            pool += [start, end]
            return result
        }
        var isOrigin = false
        if origins[key] == nil {
            origins[key] = start; isOrigin = true
            if !order.contains(key) { order.append(key) }
        }
        pending.append(Pending(stream: key, label: label, start: start, end: end, isOrigin: isOrigin))
        if pending.count >= nextHarvest {
            harvest(wait: false)
            nextHarvest = pending.count + Self.harvestEvery  // the GPU may be far behind: do not rescan every op
        }
        return result
    }

    private func takePair() -> (CUhandle, CUhandle)? {
        lock.lock()
        defer { lock.unlock() }
        while pool.count < 2 {
            var e: CUhandle = nil
            let status = driver.cuEventCreate(&e, 0)
            if status != 0 { problem = problem ?? "\(driver.error(status, "cuEventCreate"))"; return nil }
            pool.append(e)
        }
        return (pool.removeLast(), pool.removeLast())
    }

    /// Sums every completed op (every op, with `wait`) into the table and recycles its events.
    /// Call with the lock held.
    private func harvest(wait: Bool) {
        var kept: [Pending] = []
        var behind: Set<UInt> = []  // streams with an op not done: their later ops are not done either
        for p in pending {
            if behind.contains(p.stream) { kept.append(p); continue }
            let status = wait ? driver.cuEventSynchronize(p.end) : driver.cuEventQuery(p.end)
            if status == CUDADriver.errorNotReady { kept.append(p); behind.insert(p.stream); continue }
            if status == 0, let origin = origins[p.stream] {
                var s: Float = 0, e: Float = 0
                let a = p.isOrigin ? 0 : driver.cuEventElapsedTime(&s, origin, p.start)
                let b = driver.cuEventElapsedTime(&e, origin, p.end)
                if a == 0 && b == 0 {
                    sums.add(stream: streamName(p.stream, among: order), label: p.label, start: Double(s), end: Double(e))
                } else {
                    problem = problem ?? "\(driver.error(a != 0 ? a : b, "cuEventElapsedTime(\(p.label))"))"
                }
            } else if status != 0 {
                problem = problem ?? "\(driver.error(status, "cuEventQuery(\(p.label))"))"
            }
            if !p.isOrigin { pool.append(p.start) }
            pool.append(p.end)
        }
        pending = kept
    }

    private func streamName(_ key: UInt, among order: [UInt]) -> String {
        names[key] ?? "stream \((order.firstIndex(of: key) ?? order.count) + 1)"
    }
}

extension CUDABackend {
    /// Runs `enqueue`, which queues one op on this stream; with `REEL_PROFILE` set, between a pair
    /// of timing events labelled `label` (otherwise the label is never built).
    @inline(__always)
    func profiled<R>(_ label: @autoclosure () -> String, _ enqueue: () throws -> R) rethrows -> R {
        if _slowPath(CUDAProfiler.enabled) { return try cudaDevice.profiler.measured(stream, label(), enqueue) }
        return try enqueue()
    }

    /// The device's profiler when `REEL_PROFILE` is set, else nil.
    public var profiler: CUDAProfiler? { CUDAProfiler.enabled ? cudaDevice.profiler : nil }
}
