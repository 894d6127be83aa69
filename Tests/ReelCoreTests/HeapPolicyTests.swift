import Foundation
import Testing
@testable import ReelCore

@Suite struct HeapPolicyTests {
    @Test func parsesSettingsAndPrintsThemBack() throws {
        #expect(try HeapPolicy(parsing: "system") == .system)
        let policy = try HeapPolicy(parsing: "mmap-threshold=256K, arenas=2")
        #expect(policy == HeapPolicy(mmapThreshold: 256 << 10, arenaMax: 2))
        #expect(policy.description == "mmap-threshold=256K,arenas=2")
        #expect(try HeapPolicy(parsing: "mmap-threshold=1M").mmapThreshold == 1 << 20)
        for bad in ["", "arenas=0", "arenas=two", "mmap-threshold=", "mmap-threshold=-1K", "threshold=1M", "arenas"] {
            #expect(throws: HeapPolicy.ParseError.self) { try HeapPolicy(parsing: bad) }
        }
    }

    /// What `reel serve`'s policy relies on: with a fixed mmap threshold, a large buffer freed goes back to the
    /// system even after a larger one was freed before it. Under glibc's dynamic threshold that earlier free raises
    /// the threshold (to 24 MiB here) and the trim threshold with it (to twice that), so the 16 MiB buffer is carved
    /// from an arena and stays resident when freed: this test fails without `apply()`. Skips where the C library is
    /// not glibc.
    @Test func largeBufferFreedUnderTheServerPolicyLeavesTheProcess() throws {
        guard HeapStatistics.current() != nil else { return }
        // The mechanism with a threshold of 8 MiB rather than the server's 256 KiB: the setting is the whole test
        // process's, and a low one would slow every other test's allocations.
        #expect(HeapPolicy.server.mmapThreshold! <= 8 << 20)
        try HeapPolicy(mmapThreshold: 8 << 20, arenaMax: nil).apply()
        let larger = malloc(24 << 20)!
        memset(larger, 1, 24 << 20)
        free(larger)
        let size = 16 << 20
        // Whether the freed buffer's pages are still mapped, not the process's resident size (other tests allocate
        // meanwhile: a CI run's five resident-size measurements all missed the drop), asked by msync. Up to five tries: another
        // thread may map new memory at the freed address in between. Without `apply()` the buffer lies in an arena,
        // which stays mapped: no try passes.
        var stillMapped: [Bool] = []
        for _ in 0..<5 {
            let buffer = malloc(size)!
            memset(buffer, 1, size)
            let address = UInt(bitPattern: buffer)
            #expect(try Self.isMapped(address))
            free(buffer)
            stillMapped.append(try Self.isMapped(address))
            if stillMapped.last == false { break }
        }
        #expect(stillMapped.contains(false), "the freed 16 MiB buffer's address still mapped after each of \(stillMapped.count) tries")
    }

    /// Whether `address` lies in one of the process's mappings: msync on its page fails with ENOMEM where nothing is
    /// mapped. One system call, so threads mapping and unmapping meanwhile cannot make it miss the mapping, as a
    /// read of /proc/self/maps in several chunks did on a loaded CI run.
    static func isMapped(_ address: UInt) throws -> Bool {
        let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let start = UnsafeMutableRawPointer(bitPattern: address & ~(page - 1))
        if msync(start, Int(page), MS_ASYNC) == 0 { return true }
        if errno == ENOMEM { return false }
        throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EINVAL)
    }
}
