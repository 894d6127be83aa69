import Foundation
@testable import ReelMedia
import Testing

/// A finished child leaves no descriptor behind (each run of ffmpeg left its stderr pipe's read end open: `reel serve`
/// went from 17 to 89-125 descriptors in 6-minute soaks). Each child's own pipes are followed, so pipes that tests
/// running beside this one open and close do not count (a loaded CI run saw 6 such pipes against a bound of 5).
@Suite struct FFmpegProcessTests {
    /// The pipes this process holds, by inode.
    static func openPipes() -> Set<String> {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return Set(fds.compactMap { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")).flatMap { $0.hasPrefix("pipe:") ? $0 : nil }
        })
    }

    /// The pipes a process's descriptors `fds` point to (another process's, by /proc/PID/fd).
    static func pipes(ofProcess pid: Int32, fds: [Int]) -> Set<String> {
        Set(fds.compactMap { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")).flatMap { $0.hasPrefix("pipe:") ? $0 : nil }
        })
    }

    @Test func finishedChildrenLeaveNoPipeOpen() throws {
        // /bin/sh in ffmpeg's place: it reads its stdin to the end and writes to stderr, as ffmpeg does. The child's
        // stdin and stderr are the pipes this process holds the other ends of (pipe inodes are the same at both
        // ends), so other tests' pipes opened meanwhile never count.
        let runs = 20
        var left = 0
        for _ in 0..<runs {
            let child = try FFmpegProcess(executable: "/bin/sh", arguments: ["-c", "cat > /dev/null; echo done >&2"])
            let pipes = Self.pipes(ofProcess: child.processIdentifier, fds: [0, 2])
            #expect(pipes.count == 2, "the child's stdin and stderr are pipes: \(pipes)")
            #expect(!Self.openPipes().isDisjoint(with: pipes), "this process holds the other ends while the child runs")
            try child.write(Data(repeating: 7, count: 1000))
            #expect(child.finish() == "")
            if !Self.openPipes().isDisjoint(with: pipes) { left += 1 }
        }
        #expect(left == 0, "\(left) of the \(runs) children's pipes are still open after finish")
    }
}
