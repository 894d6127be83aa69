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
        // Other tests of the run allocate meanwhile (the figures are the whole process's): an attempt they spoil is
        // made again, up to three times. A trim that does nothing fails all three (checked: 0 MiB each).
        var drops: [Int] = []
        for _ in 0..<3 {
            let drop = try Self.residentDropOfATrim()
            drops.append(drop)
            if drop >= Self.freedBytes / 2 { break }
        }
        #expect(drops.contains { $0 >= Self.freedBytes / 2 }, "resident bytes given back by each trim: \(drops.map { $0 >> 20 }) MiB")
    }

    /// 48 MiB in 32 KiB chunks (under glibc's mmap threshold, so in an arena), written; every 16th stays allocated,
    /// so that the freed runs between them (480 KiB each) are not the arena's top.
    static let (chunkBytes, chunkCount) = (32 << 10, 1536)
    static var freedBytes: Int { chunkCount / 16 * 15 * chunkBytes }

    /// The resident bytes a trim gives back after freeing 15 of every 16 chunks.
    static func residentDropOfATrim() throws -> Int {
        let chunks = (0..<chunkCount).map { _ in
            let p = malloc(chunkBytes)!
            memset(p, 1, chunkBytes)
            return p
        }
        defer { for p in chunks.enumerated() where p.offset % 16 == 15 { free(p.element) } }
        for p in chunks.enumerated() where p.offset % 16 != 15 { free(p.element) }
        let before = try residentBytes()
        HeapStatistics.trim()
        return try before - residentBytes()
    }
}
