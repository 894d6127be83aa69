import Foundation
import Testing
@testable import ReelCore

@Suite struct HeapStatisticsTests {
    /// Resident bytes of this process (`/proc/self/statm`, second field, in pages).
    static func residentBytes() throws -> Int {
        let fields = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8).split(separator: " ")
        return Int(fields[1])! * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// What the server's trim after a session relies on: pages of chunks freed below a live one stay resident in
    /// their arena (glibc gives back only an arena's top), and a trim gives them back. Fails where the trim does
    /// nothing (a C library that is not glibc reports no figures and skips).
    @Test func trimGivesBackPagesFreedBelowALiveChunk() throws {
        guard HeapStatistics.current() != nil else { return }
        // 48 MiB in 32 KiB chunks (under glibc's mmap threshold, so in an arena), written; every 16th stays
        // allocated, so that the freed runs between them (480 KiB each) are not the arena's top.
        let size = 32 << 10, count = 1536
        let chunks = (0..<count).map { _ in
            let p = malloc(size)!
            memset(p, 1, size)
            return p
        }
        defer { for p in chunks.enumerated() where p.offset % 16 == 15 { free(p.element) } }
        for p in chunks.enumerated() where p.offset % 16 != 15 { free(p.element) }
        // Only the resident size around the trim is compared: the heap's figures are the whole process's, and
        // other tests allocate meanwhile.
        let before = try Self.residentBytes()
        HeapStatistics.trim()
        let after = try Self.residentBytes()
        #expect(before - after >= count * size / 2, "resident \(before >> 20) MiB before the trim, \(after >> 20) MiB after")
    }
}
