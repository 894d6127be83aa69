import Dispatch
import Foundation
import ReelCore

/// Host memory for a CPU tensor: 64-byte aligned, returned to `HostMemoryPool` when the last tensor goes.
public final class CPUStorage: HostStorage, @unchecked Sendable {
    public let baseAddress: UnsafeMutableRawPointer
    public let byteCount: Int
    private let capacity: Int
    /// The cap this allocation counts against (`CPUBackend.memoryBudget`), nil for none.
    private let budget: MemoryBudget?

    public init(byteCount: Int, budget: MemoryBudget? = nil) throws {
        try budget?.take(byteCount)
        do {
            (baseAddress, capacity) = try HostMemoryPool.shared.take(byteCount)
        } catch {
            budget?.give(byteCount)
            throw error
        }
        self.byteCount = byteCount
        self.budget = budget
    }

    deinit {
        HostMemoryPool.shared.give(baseAddress, capacity: capacity)
        budget?.give(byteCount)
    }
}

/// Keeps freed large blocks for reuse. A model allocates the same activation sizes block after
/// block, and a fresh mapping costs a page fault per 4 KB page on first touch (~30 ms for a
/// 28 MB output on the development VM, more than the op itself), so reuse matters more than the
/// allocator's speed. Large blocks are mapped directly and asked for transparent huge pages;
/// the cache holds at most `limit` bytes, dropping the oldest blocks first.
final class HostMemoryPool: @unchecked Sendable {
    static let shared = HostMemoryPool()
    /// Blocks from this size up are mapped, rounded to 64 KB and cached.
    static let largeBlock = 1 << 20
    let limit = Int(min(UInt64(4) << 30, ProcessInfo.processInfo.physicalMemory / 8))
    private let lock = NSLock()
    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private var order: [(capacity: Int, pointer: UnsafeMutableRawPointer)] = []
    private var cached = 0

    func take(_ byteCount: Int) throws -> (UnsafeMutableRawPointer, Int) {
        if byteCount < Self.largeBlock {
            var p: UnsafeMutableRawPointer?
            // posix_memalign with 0 bytes may return nil; always ask for at least one cache line.
            guard posix_memalign(&p, 64, max(byteCount, 64)) == 0, let p else {
                throw ReelError.outOfMemory(backend: "cpu", bytes: byteCount)
            }
            return (p, byteCount)
        }
        let capacity = (byteCount + 0xFFFF) & ~0xFFFF
        lock.lock()
        if var list = free[capacity], let p = list.popLast() {
            free[capacity] = list
            cached -= capacity
            if let i = order.firstIndex(where: { $0.pointer == p }) { order.remove(at: i) }
            lock.unlock()
            return (p, capacity)
        }
        lock.unlock()
        guard let p = mmap(nil, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED else {
            throw ReelError.outOfMemory(backend: "cpu", bytes: byteCount)
        }
        _ = madvise(p, capacity, 14)  // MADV_HUGEPAGE: 512x fewer first-touch faults where enabled
        return (p, capacity)
    }

    func give(_ p: UnsafeMutableRawPointer, capacity: Int) {
        if capacity < Self.largeBlock {
            Foundation.free(p)
            return
        }
        var release: [(Int, UnsafeMutableRawPointer)] = []
        lock.lock()
        if capacity > limit {
            release.append((capacity, p))
        } else {
            free[capacity, default: []].append(p)
            order.append((capacity, p))
            cached += capacity
            while cached > limit, let oldest = order.first {
                order.removeFirst()
                if var list = free[oldest.capacity], let i = list.firstIndex(of: oldest.pointer) {
                    list.remove(at: i)
                    free[oldest.capacity] = list
                }
                cached -= oldest.capacity
                release.append((oldest.capacity, oldest.pointer))
            }
        }
        lock.unlock()
        for (c, q) in release { munmap(q, c) }
    }
}

/// The event of a CPU "stream": every op has finished by the time it returns, so the event is reached
/// when it is recorded (its timestamp).
public final class CPUEvent: BackendEvent {
    let reached = ContinuousClock.now
    public func synchronize() throws {}
    public func seconds(since earlier: any BackendEvent) throws -> Double {
        guard let earlier = earlier as? CPUEvent else {
            throw ReelError.invalidArgument(op: "seconds(since:)", message: "events of different devices")
        }
        return (reached - earlier.reached).seconds
    }
}

/// Host memory and cores: one device, whatever the number of `CPUBackend`s (each a "stream" whose ops
/// run synchronously on the calling thread and its workers).
///
/// `shared` is the CPU. Further instances (`CPUDevice(ordinal:)`) stand for devices of their own in one
/// process, so that code spread over several devices (a `Communicator`'s ranks) runs and is checked on
/// the CPU: their streams share the host's memory and cores, but a tensor crosses between them as it would
/// between GPUs (`Tensor.handedOver(to:ready:)` copies it).
public final class CPUDevice: Device {
    public static let shared = CPUDevice(name: "cpu")
    public let name: String

    private init(name: String) { self.name = name }

    /// A CPU device distinct from `shared` and from every other instance, named "cpu:<ordinal>".
    public convenience init(ordinal: Int) { self.init(name: "cpu:\(ordinal)") }

    public func makeStream() throws -> any Backend { CPUBackend(device: self) }
    public func memoryStatistics() -> MemoryStatistics? { nil }
    /// Host memory is readable by every host stream; a GPU's memory is not. Instances other than `shared`
    /// read only their own, as separate devices do.
    public func canRead(from other: any Device) -> Bool { other === self }
}

/// Which matrix-multiply implementation `matmul` (and the ops built on it) uses.
public enum GEMMPath: String, CaseIterable, Sendable {
    /// For matmul, the faster of a run-time loaded BLAS and the own kernel, measured once at first use
    /// (`GEMMSelection`); convolutions and attention always use the own kernel (implicit GEMM, fused tiles).
    case auto
    /// `cblas_sgemm` of the BLAS found by `BLAS.shared` (convolutions through im2col); an error
    /// when none is installed.
    case blas
    /// Reel's own packed, blocked, multithreaded SIMD kernel.
    case own
}

/// The CPU backend: float32 math on host memory, multithreaded over `threads` workers, SIMD in the
/// hot loops. It computes on any `HostStorage` (its own allocations and memory-mapped weight files)
/// and is the oracle every other backend is checked against.
///
/// Ops are synchronous: a "stream" is the backend itself and events are already complete.
public final class CPUBackend: HostBackend, @unchecked Sendable {
    /// The device's name: "cpu", or "cpu:<ordinal>" for another in-process device.
    public let name: String
    /// The device this stream belongs to (`CPUDevice.shared` unless made by another `CPUDevice`).
    private let cpuDevice: CPUDevice
    /// Worker count for the parallel loops (the active core count unless set).
    public let threads: Int
    /// Matrix-multiply implementation.
    public let gemmPath: GEMMPath
    /// A cap on the memory this stream's tensors hold (`--gpu-memory` with `--backend cpu`, and tests of the cap
    /// and of weight streaming); nil for none. Memory-mapped weights wrap file bytes and do not count.
    public let memoryBudget: MemoryBudget?

    public init(threads: Int? = nil, gemm: GEMMPath = .auto, device: CPUDevice = .shared,
                memoryBudget: MemoryBudget? = nil) {
        self.cpuDevice = device
        self.name = device.name
        self.threads = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        self.gemmPath = gemm
        self.memoryBudget = memoryBudget
    }

    /// What `gemmPath` runs for matmul (`.own` or `.blas`); `.auto` is measured on first use.
    public var resolvedGEMMPath: GEMMPath {
        gemmPath == .auto ? GEMMSelection.resolved(threads: threads).path : gemmPath
    }

    /// The GEMM matmul runs and why, in a sentence (`reel devices`).
    public var gemmDescription: String {
        switch gemmPath {
        case .own: return "own kernel (asked for)"
        case .blas: return "\(BLAS.shared?.path ?? "no BLAS installed") (asked for)"
        case .auto: return GEMMSelection.resolved(threads: threads).reason
        }
    }

    // MARK: Memory

    public func allocate(_ shape: Shape, dtype: DType) throws -> Tensor {
        try require(shape.isValid, "allocate", "negative dimension in \(shape)")
        let storage = try CPUStorage(byteCount: shape.count * dtype.size, budget: memoryBudget)
        return Tensor(storage: storage, shape: shape, dtype: dtype, backend: self)
    }

    public func upload(_ bytes: UnsafeRawBufferPointer, shape: Shape, dtype: DType) throws -> Tensor {
        let t = try allocate(shape, dtype: dtype)
        try require(bytes.count == t.byteCount, "upload", "\(bytes.count) bytes for \(shape) \(dtype) (\(t.byteCount) bytes)")
        if t.byteCount > 0 { t.hostPointer!.copyMemory(from: bytes.baseAddress!, byteCount: t.byteCount) }
        return t
    }

    public func download(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws {
        let src = try host(tensor, "download")
        try require(bytes.count == tensor.byteCount, "download", "\(bytes.count) bytes for \(tensor.shape) \(tensor.dtype) (\(tensor.byteCount) bytes)")
        if tensor.byteCount > 0 { bytes.baseAddress!.copyMemory(from: src, byteCount: tensor.byteCount) }
    }

    public func copy(_ src: Tensor, into dst: Tensor, axis: Int, at offset: Int) throws {
        let s = try host(src, "copy"), d = try host(dst, "copy")
        try require(src.rank == dst.rank, "copy", "rank of \(src.shape) differs from \(dst.shape)")
        let a = dst.shape.normalize(axis)
        try require(a >= 0 && a < dst.rank, "copy", "axis \(axis) out of range for \(dst.shape)")
        for i in 0..<dst.rank where i != a {
            try require(src.shape[i] == dst.shape[i], "copy", "\(src.shape) and \(dst.shape) differ on axis \(i)")
        }
        try require(offset >= 0 && offset + src.shape[a] <= dst.shape[a], "copy",
                    "\(src.shape[a]) entries at \(offset) overrun axis \(a) of \(dst.shape)")
        let (outer, srcExtent, inner) = src.shape.split(at: a)
        let dstExtent = dst.shape[a]
        let rowElements = srcExtent * inner
        guard outer > 0, rowElements > 0 else { return }
        if src.dtype == dst.dtype {
            let es = src.dtype.size
            parallelFor(outer, grain: max(1, 16384 / (rowElements * es))) { rows in
                for o in rows {
                    (d + (o * dstExtent + offset) * inner * es).copyMemory(from: s + o * rowElements * es, byteCount: rowElements * es)
                }
            }
        } else {
            // Different dtypes: convert through float32.
            let srcDType = src.dtype, dstDType = dst.dtype
            parallelFor(outer, grain: max(1, 4096 / rowElements)) { rows in
                let tmp = UnsafeMutablePointer<Float>.allocate(capacity: rowElements)
                defer { tmp.deallocate() }
                for o in rows {
                    decodeFloats(s + o * rowElements * srcDType.size, srcDType, tmp, rowElements)
                    encodeFloats(tmp, d + (o * dstExtent + offset) * inner * dstDType.size, dstDType, rowElements)
                }
            }
        }
    }

    public func fill(_ tensor: Tensor, with value: Float) throws {
        let d = try host(tensor, "fill")
        let n = tensor.count, dtype = tensor.dtype
        guard n > 0 else { return }
        if dtype == .f32 {
            let p = d.assumingMemoryBound(to: Float.self)
            parallelFor(n, grain: 1 << 16) { r in
                (p + r.lowerBound).update(repeating: value, count: r.count)
            }
            return
        }
        // Encode the value once and repeat its bytes.
        var one = value
        let size = dtype.size
        var pattern = [UInt8](repeating: 0, count: size)
        pattern.withUnsafeMutableBytes { raw in
            withUnsafePointer(to: &one) { encodeFloats($0, raw.baseAddress!, dtype, 1) }
        }
        let bytes = pattern
        parallelFor(n, grain: 1 << 16) { r in
            bytes.withUnsafeBytes { pat in
                for i in r { (d + i * size).copyMemory(from: pat.baseAddress!, byteCount: size) }
            }
        }
    }

    // MARK: Streams

    public var device: any Device { cpuDevice }
    public func synchronize() throws {}
    public func makeStream() throws -> any Backend { self }
    public func recordEvent() throws -> any BackendEvent { CPUEvent() }
    public func recordTimedEvent() throws -> any BackendEvent { CPUEvent() }
    public func wait(for event: any BackendEvent) throws {}
}

// MARK: - Shared machinery of the ops.

extension CPUBackend {
    /// The address of a tensor's first element, or `wrongBackend` when it does not live in host memory.
    @inline(__always)
    func host(_ t: Tensor, _ op: String) throws -> UnsafeMutableRawPointer {
        guard t.backend is HostBackend, let s = t.storage as? HostStorage else {
            throw ReelError.wrongBackend(op: op, expected: name, got: t.backend.name)
        }
        return s.baseAddress + t.byteOffset
    }

    /// Runs `body` over `0..<n` split into contiguous ranges, one per worker (at most `threads`,
    /// and no range shorter than `grain` unless `n` is).
    @inline(__always)
    func parallelFor(_ n: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        let chunks = Swift.min(threads, Swift.max(1, n / Swift.max(grain, 1)))
        if chunks <= 1 {
            if n > 0 { body(0..<n) }
            return
        }
        withoutActuallyEscaping(body) { body in
            let box = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = n * c / chunks, hi = n * (c + 1) / chunks
                if hi > lo { box.value(lo..<hi) }
            }
        }
    }

    /// Runs `body(worker, task)` for every task in `0..<n` on at most `threads` workers that take
    /// the next task as they finish one: for tasks of uneven cost, or more tasks than workers.
    /// `worker` (in `0..<min(threads, n)`) indexes per-worker scratch.
    func parallelTasks(_ n: Int, _ body: (_ worker: Int, _ task: Int) -> Void) {
        let workers = Swift.min(threads, n)
        if workers <= 1 {
            for t in 0..<n { body(0, t) }
            return
        }
        let counter = TaskCounter()
        withoutActuallyEscaping(body) { body in
            let box = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                while true {
                    let t = counter.next()
                    if t >= n { break }
                    box.value(w, t)
                }
            }
        }
    }

    /// A tensor's elements as float32: the tensor's own memory when it is f32, a converted copy otherwise.
    func floats(_ t: Tensor, _ op: String) throws -> FloatInput {
        let p = try host(t, op)
        if t.dtype == .f32 { return FloatInput(pointer: p.assumingMemoryBound(to: Float.self), storage: nil) }
        let n = t.count
        let storage = try CPUStorage(byteCount: n * 4)
        let buf = storage.floats
        let dtype = t.dtype
        parallelFor(n, grain: 1 << 15) { r in
            decodeFloats(p + r.lowerBound * dtype.size, dtype, buf + r.lowerBound, r.count)
        }
        return FloatInput(pointer: buf, storage: storage)
    }

    /// A new tensor of `shape` and `dtype` whose float32 values `body` writes: straight into the
    /// tensor when it is f32, through a float32 buffer that is converted afterwards otherwise.
    func makeOutput(_ shape: Shape, _ dtype: DType, _ body: (UnsafeMutablePointer<Float>) throws -> Void) throws -> Tensor {
        let out = try allocate(shape, dtype: dtype)
        let d = out.hostPointer!
        if dtype == .f32 {
            try body(d.assumingMemoryBound(to: Float.self))
            return out
        }
        let n = shape.count
        let scratch = try CPUStorage(byteCount: n * 4)
        let buf = scratch.floats
        try body(buf)
        parallelFor(n, grain: 1 << 15) { r in
            encodeFloats(buf + r.lowerBound, d + r.lowerBound * dtype.size, dtype, r.count)
        }
        return out
    }

    func requireFloat(_ t: Tensor, _ op: String) throws {
        try require(t.dtype.isFloatingPoint, op, "expected a floating-point tensor, got \(t.dtype)")
    }

    /// A per-channel vector (norm weight, bias) must hold exactly `channels` elements.
    func requireVector(_ t: Tensor?, _ channels: Int, _ what: String, _ op: String) throws {
        guard let t else { return }
        try require(t.count == channels, op, "\(what) \(t.shape) does not match \(channels) channels")
    }
}

/// The next task index for `parallelTasks`' workers (tasks last milliseconds; a lock is cheap).
final class TaskCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value - 1
    }
}

/// float32 view of an op's input, holding the converted copy when there is one.
final class FloatInput {
    let pointer: UnsafeMutablePointer<Float>
    private let storage: CPUStorage?
    init(pointer: UnsafeMutablePointer<Float>, storage: CPUStorage?) { self.pointer = pointer; self.storage = storage }
}

extension CPUStorage {
    /// The allocation as float32 scratch space.
    var floats: UnsafeMutablePointer<Float> { baseAddress.assumingMemoryBound(to: Float.self) }
}

// MARK: - dtype conversion of element runs.

/// Converts `n` elements of `dtype` at `src` to float32.
@inline(__always)
func decodeFloats(_ src: UnsafeRawPointer, _ dtype: DType, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    switch dtype {
    case .f32:
        dst.update(from: src.assumingMemoryBound(to: Float.self), count: n)
    case .bf16:
        // bf16 is the top half of a float32.
        let s = src.assumingMemoryBound(to: UInt16.self)
        let d = UnsafeMutableRawPointer(dst)
        var i = 0
        while i + 8 <= n {
            let v = UnsafeRawPointer(s + i).loadUnaligned(as: SIMD8<UInt16>.self)
            let w = SIMD8<UInt32>(truncatingIfNeeded: v) &<< 16
            d.storeBytes(of: unsafeBitCast(w, to: SIMD8<Float>.self), toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { dst[i] = BFloat16Bits.toFloat(s[i]); i += 1 }
    case .f16:
        let s = src.assumingMemoryBound(to: UInt16.self)
        for i in 0..<n { dst[i] = Float(Float16(bitPattern: s[i])) }
    default:
        HostConversion.decode(UnsafeRawBufferPointer(start: src, count: n * dtype.size), from: dtype,
                              into: UnsafeMutableBufferPointer(start: dst, count: n))
    }
}

/// Converts `n` float32 values to `dtype` at `dst`.
@inline(__always)
func encodeFloats(_ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, _ dtype: DType, _ n: Int) {
    switch dtype {
    case .f32:
        dst.copyMemory(from: src, byteCount: n * 4)
    case .bf16:
        // Round to nearest even like BFloat16Bits.fromFloat; NaN lanes take the scalar path's quiet NaN.
        let d = dst.assumingMemoryBound(to: UInt16.self)
        var i = 0
        while i + 8 <= n {
            let v = load8(src + i)
            let bits = unsafeBitCast(v, to: SIMD8<UInt32>.self)
            var r = (bits &+ 0x7FFF &+ ((bits &>> 16) & 1)) &>> 16
            let nan = v .!= v
            if nan != .init(repeating: false) { r.replace(with: (bits &>> 16) | 0x0040, where: nan) }
            UnsafeMutableRawPointer(d + i).storeBytes(of: SIMD8<UInt16>(truncatingIfNeeded: r), as: SIMD8<UInt16>.self)
            i += 8
        }
        while i < n { d[i] = BFloat16Bits.fromFloat(src[i]); i += 1 }
    case .f16:
        let d = dst.assumingMemoryBound(to: UInt16.self)
        for i in 0..<n { d[i] = Float16(src[i]).bitPattern }
    default:
        HostConversion.encode(UnsafeBufferPointer(start: src, count: n), as: dtype,
                              into: UnsafeMutableRawBufferPointer(start: dst, count: n * dtype.size))
    }
}

extension CPUBackend: HostToDeviceCopying {
    /// Host memory outside any `memoryBudget`: streamed weights live beside the device, not on it.
    public func makeHostBuffer(bytes: Int) throws -> any HostStorage { try CPUStorage(byteCount: bytes) }

    public func copy(fromHost source: UnsafeRawPointer, into tensor: Tensor) throws {
        let dst = try host(tensor, "copy(fromHost:into:)")
        if tensor.byteCount > 0 { dst.copyMemory(from: source, byteCount: tensor.byteCount) }
    }

    public func copy(_ tensor: Tensor, toHost destination: UnsafeMutableRawPointer) throws {
        let src = try host(tensor, "copy(_:toHost:)")
        if tensor.byteCount > 0 { destination.copyMemory(from: src, byteCount: tensor.byteCount) }
    }
}
