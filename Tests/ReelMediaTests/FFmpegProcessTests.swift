import Foundation
@testable import ReelMedia
import Testing

/// A finished child leaves no descriptor behind (each run of ffmpeg left its stderr pipe's read end open: `reel serve`
/// went from 17 to 89-125 descriptors in 6-minute soaks).
@Suite struct FFmpegProcessTests {
    /// The pipes this process holds, by inode.
    static func openPipes() -> Set<String> {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return Set(fds.compactMap { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")).flatMap { $0.hasPrefix("pipe:") ? $0 : nil }
        })
    }

    @Test func finishedChildrenLeaveNoPipeOpen() throws {
        // /bin/sh in ffmpeg's place: it reads its stdin to the end and writes to stderr, as ffmpeg does.
        let runs = 20
        var opened = Set<String>()
        for _ in 0..<runs {
            let before = Self.openPipes()
            let child = try FFmpegProcess(executable: "/bin/sh", arguments: ["-c", "cat > /dev/null; echo done >&2"])
            try child.write(Data(repeating: 7, count: 1000))
            opened.formUnion(Self.openPipes().subtracting(before))
            #expect(child.finish() == "")
        }
        let finished = Self.openPipes()
        // Other tests running beside this one may hold a few pipes they opened meanwhile: never one for each run.
        let left = opened.intersection(finished)
        #expect(opened.count >= runs, "each run opens its pipes: \(opened.count)")
        #expect(left.count < runs / 4, "\(left.count) of the \(runs) children's pipes are still open")
    }
}
