import Foundation
import ReelCore

/// Device memory of one tensor. When the last tensor viewing it goes away, the block goes back to
/// its stream's free list in the allocator instead of to cuMemFree.
public final class CUDAStorage: TensorStorage, @unchecked Sendable {
    public let pointer: CUdeviceptr
    public let byteCount: Int
    let blockSize: Int
    let stream: CUhandle
    let allocator: CUDAAllocator

    init(pointer: CUdeviceptr, byteCount: Int, blockSize: Int, stream: CUhandle, allocator: CUDAAllocator) {
        self.pointer = pointer; self.byteCount = byteCount; self.blockSize = blockSize
        self.stream = stream; self.allocator = allocator
    }

    deinit { allocator.release(pointer, blockSize: blockSize, stream: stream) }
}

/// A caching device allocator: blocks are binned by rounded size and kept per stream, so the steady
/// state of generation (the same shapes every block) never calls cuMemAlloc.
///
/// A block freed on stream S is reused only by later allocations on S: stream order then
/// guarantees that work still reading it has finished. A tensor handed to another stream must be kept
/// alive until that stream's work is done (synchronize, or an event the owner waits for).
public final class CUDAAllocator: @unchecked Sendable {
    private let driver: CUDADriver
    private let lock = NSLock()
    private struct BinKey: Hashable { var stream: UInt; var size: Int }
    private var free: [BinKey: [CUdeviceptr]] = [:]
    /// Storages allocated while a stream is being captured into a graph, kept alive by that graph.
    private var capturing: [UInt: CUDAGraphCapture] = [:]
    public private(set) var cachedBytes = 0
    public private(set) var liveBytes = 0
    public private(set) var peakBytes = 0
    public private(set) var driverAllocations = 0
    /// With `REEL_PROFILE`: live blocks per stream and size, and a copy of them taken as the peak rises.
    private var liveBlocks: [BinKey: Int] = [:]
    private var peakCount: [BinKey: Int] = [:]
    private var peakCountBytes = 0
    /// The live blocks are copied each time the peak rises this far past the last copy.
    static let peakCountStep = 64 << 20

    init(driver: CUDADriver, device: String) { self.driver = driver; self.device = device }

    /// "cuda:0", in the cap's error.
    private let device: String
    /// The most device memory this allocator may hold for live tensors (`--gpu-memory`). Before a new driver
    /// allocation passes it counting cached and slab bytes too, the cached blocks of their own go back to the
    /// driver; slab blocks stay cached (they are never given back), so `reserved` may sit above the cap by the
    /// slab memory that is free. nil: no cap (the GPU's memory is the limit).
    public var cap: Int? {
        get { lock.withLock { capBytes } }
        set { lock.withLock { capBytes = newValue } }
    }
    private var capBytes: Int?
    /// What the allocator holds from the driver. Call with the lock held.
    private var heldBytes: Int { liveBytes + cachedBytes + slabSpareBytes }

    /// Throws `ReelError.overMemoryCap` when `size` more live bytes would pass the cap; gives the cached blocks
    /// back first when what it holds would. `requested`: the tensor's bytes, for the message.
    private func admit(_ size: Int, requested: Int) throws {
        guard let cap = lock.withLock({ capBytes }) else { return }
        if lock.withLock({ heldBytes + size > cap }) { try emptyCache() }
        try lock.withLock {
            guard liveBytes + size <= cap else {
                throw ReelError.overMemoryCap(device: device, requested: requested, inUse: liveBytes, cap: cap)
            }
        }
    }

    /// Whether a new slab fits under the cap (else a slab-sized block is allocated on its own). Call with the lock held.
    private var slabFitsCap: Bool { capBytes.map { liveBytes + slabSpareBytes + Self.slabBytes <= $0 } ?? true }

    /// Starts a new peak measurement at the bytes live now.
    public func resetPeak() {
        lock.lock()
        peakBytes = liveBytes
        if CUDAProfiler.enabled { peakCount = liveBlocks; peakCountBytes = liveBytes }
        lock.unlock()
    }

    /// `REEL_PROFILE`: the peak, the live bytes when the blocks were last counted on the way up to
    /// it (at most `peakCountStep` below it), and those blocks per stream and size.
    func peakBlocks() -> (peak: Int, counted: Int, bins: [(stream: UInt, size: Int, count: Int)]) {
        lock.lock()
        defer { lock.unlock() }
        return (peakBytes, peakCountBytes, peakCount.map { ($0.key.stream, $0.key.size, $0.value) })
    }

    /// Counts a block in or out of `liveBlocks`; copies them at a new peak. Call with the lock held.
    private func countBlock(_ key: BinKey, _ delta: Int) {
        let n = liveBlocks[key, default: 0] + delta
        liveBlocks[key] = n == 0 ? nil : n
        if delta > 0 && liveBytes == peakBytes && liveBytes >= peakCountBytes + Self.peakCountStep {
            peakCount = liveBlocks
            peakCountBytes = liveBytes
        }
    }

    /// Rounds up to 512 bytes under 1 MiB, to 256 KiB up to 16 MiB (slab blocks) and to 2 MiB above,
    /// so repeated shapes land in one bin.
    public static func blockSize(for bytes: Int) -> Int {
        let b = max(bytes, 1)
        if b < 1 << 20 { return (b + 511) & ~511 }
        if b <= slabMaxBlock { return (b + slabGranule - 1) & ~(slabGranule - 1) }
        return (b + (2 << 20) - 1) & ~((2 << 20) - 1)
    }

    /// Blocks over 1 MiB and up to this size are carved from shared slabs: the driver gives memory in
    /// 2 MiB pages, so a block of its own would round a 4.5 MiB weight (the 1.3B DiT has 240 of them)
    /// up to 6 MiB. Slab blocks are cached for reuse like any other but never given back to the driver.
    static let slabMaxBlock = 16 << 20, slabGranule = 256 << 10, slabBytes = 64 << 20
    private var slab: (base: CUdeviceptr, used: Int)?
    /// Slab bytes not handed out yet (the current slab's tail and the tails left behind).
    public private(set) var slabSpareBytes = 0

    private static func isSlabBlock(_ size: Int) -> Bool { size > 1 << 20 && size <= slabMaxBlock }

    /// A new block of `size` from the current slab, or from a new slab when it does not fit. Call with the lock held.
    private func carve(_ size: Int) throws -> CUdeviceptr {
        if let s = slab, s.used + size <= Self.slabBytes {
            slab = (s.base, s.used + size)
            slabSpareBytes -= size
            return s.base + UInt64(s.used)
        }
        if !slabFitsCap { return 0 }   // near the cap: the block is an allocation of its own
        var base: CUdeviceptr = 0
        let status = driver.cuMemAlloc(&base, Self.slabBytes)
        if status == 2 { throw ReelError.outOfMemory(backend: "cuda", bytes: size) }
        try driver.check(status, "cuMemAlloc_v2(\(Self.slabBytes)) for a slab")
        driverAllocations += 1
        slab = (base, size)
        slabSpareBytes += Self.slabBytes - size
        return base
    }

    func allocate(_ bytes: Int, stream: CUhandle) throws -> CUDAStorage {
        let size = CUDAAllocator.blockSize(for: bytes)
        let key = BinKey(stream: UInt(bitPattern: stream), size: size)
        try admit(size, requested: bytes)
        lock.lock()
        var ptr: CUdeviceptr = 0
        if var list = free[key], let p = list.popLast() {
            free[key] = list
            cachedBytes -= size
            ptr = p
        }
        var slabError: Error?
        if ptr == 0 && Self.isSlabBlock(size) {
            do { ptr = try carve(size) } catch { slabError = error }
        }
        lock.unlock()
        if slabError != nil {  // out of memory for a new slab: give the cached blocks back and try once more
            try emptyCache()
            lock.lock()
            defer { lock.unlock() }
            ptr = try carve(size)
        }
        if ptr == 0 {
            var status = driver.cuMemAlloc(&ptr, size)
            if status == 2 {  // out of memory: give the cached blocks back and try once more
                try emptyCache()
                status = driver.cuMemAlloc(&ptr, size)
            }
            if status == 2 { throw ReelError.outOfMemory(backend: "cuda", bytes: bytes) }
            try driver.check(status, "cuMemAlloc_v2(\(size))")
            lock.lock(); driverAllocations += 1; lock.unlock()
        }
        let storage = CUDAStorage(pointer: ptr, byteCount: bytes, blockSize: size, stream: stream, allocator: self)
        lock.lock()
        liveBytes += size
        peakBytes = max(peakBytes, liveBytes)
        if CUDAProfiler.enabled { countBlock(key, 1) }
        capturing[UInt(bitPattern: stream)]?.retained.append(storage)
        lock.unlock()
        return storage
    }

    func release(_ ptr: CUdeviceptr, blockSize: Int, stream: CUhandle) {
        lock.lock()
        free[BinKey(stream: UInt(bitPattern: stream), size: blockSize), default: []].append(ptr)
        cachedBytes += blockSize
        liveBytes -= blockSize
        if CUDAProfiler.enabled { countBlock(BinKey(stream: UInt(bitPattern: stream), size: blockSize), -1) }
        lock.unlock()
    }

    /// Frees every cached block that is an allocation of its own (after the device is idle, since a
    /// cached block may still be in use by queued work on its stream); slab blocks stay cached.
    public func emptyCache() throws {
        lock.lock()
        let own = free.filter { !Self.isSlabBlock($0.key.size) }
        let blocks = own.values.flatMap { $0 }
        for (key, list) in own {
            free[key] = nil
            cachedBytes -= key.size * list.count
        }
        lock.unlock()
        for p in blocks { _ = driver.cuMemFree(p) }
    }

    func beginCapture(stream: CUhandle, _ capture: CUDAGraphCapture) {
        lock.lock(); capturing[UInt(bitPattern: stream)] = capture; lock.unlock()
    }

    func endCapture(stream: CUhandle) {
        lock.lock(); capturing[UInt(bitPattern: stream)] = nil; lock.unlock()
    }
}

/// What a graph keeps alive: every storage allocated while it was captured (its intermediates and
/// outputs), so no other work can be given those addresses while the graph may replay.
final class CUDAGraphCapture: @unchecked Sendable {
    var retained: [CUDAStorage] = []
}

/// Page-locked host buffers through which uploads and downloads go, so copies are true DMA
/// transfers. Two buffers alternate: the host fills one while the other is being copied.
final class PinnedStaging: @unchecked Sendable {
    static let chunk = 32 << 20
    private let driver: CUDADriver
    let lock = NSLock()
    private var buffers: [UnsafeMutableRawPointer] = []
    private var events: [CUhandle] = []

    init(driver: CUDADriver) { self.driver = driver }

    /// The two staging buffers and the event marking when each was last consumed; made on first use.
    func acquire() throws -> [(UnsafeMutableRawPointer, CUhandle)] {
        if buffers.isEmpty {
            for _ in 0..<2 {
                var p: UnsafeMutableRawPointer?
                try driver.check(driver.cuMemAllocHost(&p, PinnedStaging.chunk), "cuMemAllocHost_v2(\(PinnedStaging.chunk))")
                var e: CUhandle = nil
                try driver.check(driver.cuEventCreate(&e, CUDADriver.eventDisableTiming), "cuEventCreate")
                buffers.append(p!)
                events.append(e)
            }
        }
        return Array(zip(buffers, events))
    }
}
