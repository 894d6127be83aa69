import CHeap

/// The process's C heap as glibc's malloc counts it, summed over its arenas: what is allocated, and what malloc
/// keeps free inside its arenas (resident wherever it was touched and not given back). Tensors on the CPU and
/// every Swift object live here, so a resident size that grows while `inUseBytes` does not is memory malloc
/// holds, not objects kept alive.
public struct HeapStatistics: Sendable, Equatable {
    /// Bytes allocated: in the arenas, plus large chunks mmapped on their own.
    public var inUseBytes: Int
    /// Bytes free inside the arenas, kept by malloc for later allocations.
    public var freeBytes: Int
    /// Bytes of the arenas' heaps (allocated and free; chunks mmapped on their own not included).
    public var arenaBytes: Int

    /// The figures now (`mallinfo2`, which takes each arena's lock in turn); nil where the C library is not glibc.
    public static func current() -> HeapStatistics? {
        let s = reel_heap_stats_now()
        guard s.available != 0 else { return nil }
        return HeapStatistics(inUseBytes: Int(s.inUseBytes + s.mappedBytes), freeBytes: Int(s.freeBytes),
                              arenaBytes: Int(s.arenaBytes))
    }

    /// Gives the free pages of every arena back to the system (`malloc_trim(0)`); true when some were. It walks
    /// every arena under its lock, so it is for quiet moments, not for a hot path.
    @discardableResult
    public static func trim() -> Bool { reel_heap_trim() != 0 }
}
