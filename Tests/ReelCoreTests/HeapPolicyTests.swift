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
        // Whether a buffer got pages of its own, which free unmaps at once: glibc marks such a chunk IS_MMAPPED
        // (bit 1 of the size word before the pointer). Asked of the chunk itself, not of the process's mappings or
        // resident size: other tests map, unmap and reuse addresses meanwhile (a loaded CI run saw the freed address
        // mapped again on all five tries, another the live buffer's mapping missing from a /proc/self/maps read).
        // glibc serves a request from an arena's free memory before the threshold matters: under a loaded run one
        // 16 MiB request was carved from a free chunk another test had left in the thread's arena (size word
        // 1000015). Each carved buffer is held, so that the free chunks that large are used up and the next request
        // reaches the threshold; without `apply()` the earlier free raised the threshold and all eight are carved.
        var held: [UnsafeMutableRawPointer] = []
        defer { held.forEach { free($0) } }
        var carved: [String] = []
        for _ in 0..<8 {
            let buffer = malloc(size)!
            memset(buffer, 1, size)
            held.append(buffer)
            let sizeWord = buffer.load(fromByteOffset: -MemoryLayout<Int>.size, as: Int.self)
            if sizeWord & 0x2 != 0 {
                #expect(sizeWord & ~0x7 >= size)
                return
            }
            carved.append(String(sizeWord, radix: 16))
        }
        Issue.record("none of 8 buffers of 16 MiB got pages of its own (size words \(carved.joined(separator: ", ")))")
    }
}
