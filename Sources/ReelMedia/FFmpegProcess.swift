import Foundation
import ReelCore
#if canImport(Glibc)
import Glibc
#endif

/// A running ffmpeg child that Reel feeds on its stdin (raw frames) and may read on its stdout (an encoded
/// stream), with its stderr kept for messages. Used by the MP4 sink, the live outputs and the studio's H.264.
///
/// Nothing it does can hang or kill the caller: SIGPIPE is ignored (a child that died makes writes fail with
/// EPIPE), a write that makes no progress for `stallTimeout` terminates the child (SIGTERM, then SIGKILL two
/// seconds later) so that the write fails, and `finish()` waits at most `stallTimeout` before doing the same.
/// The child is always reaped.
final class FFmpegProcess: @unchecked Sendable {
    let executable: String
    /// The child's stdout when `readOutput` was asked for; whoever reads it closes it.
    let output: FileHandle?
    private let process = Process()
    private var stdin: FileHandle?
    private let errors: StderrCollector
    private let stallTimeout: Double
    private let lock = NSLock()
    private var killedForStall = false
    private var reaped = false

    init(executable: String, arguments: [String], readOutput: Bool = false, stallTimeout: Double = 30) throws {
        // A reader that died must not kill us with SIGPIPE: writes then fail with EPIPE instead.
        signal(SIGPIPE, SIG_IGN)
        self.executable = executable
        self.stallTimeout = stallTimeout
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let input = Pipe(), errorPipe = Pipe()
        let outputPipe = readOutput ? Pipe() : nil
        process.standardInput = input
        process.standardOutput = outputPipe ?? FileHandle.nullDevice
        process.standardError = errorPipe
        do { try process.run() } catch {
            throw ReelError.library(name: "ffmpeg", message: "could not start \(executable): \(error.localizedDescription)")
        }
        stdin = input.fileHandleForWriting
        output = outputPipe?.fileHandleForReading
        errors = StderrCollector(errorPipe.fileHandleForReading)
    }

    /// The child's process id (a test checks that it was reaped).
    var processIdentifier: Int32 { process.processIdentifier }

    /// Whether the child was terminated because a write or the finish made no progress.
    var stalled: Bool { lock.withLock { killedForStall } }

    /// Writes to the child's stdin; throws (the system's message) when it has exited or stalled.
    func write(_ data: Data) throws {
        guard let stdin else { throw ReelError.library(name: "ffmpeg", message: "its input is closed") }
        let watchdog = stallWatchdog()
        defer { watchdog.cancel() }
        try stdin.write(contentsOf: data)
    }

    /// Closes stdin and waits for the child (at most `stallTimeout`, then it is terminated). Returns its error
    /// text when it failed or was terminated, "" when it exited with status 0. Idempotent.
    func finish() -> String {
        try? stdin?.close()
        stdin = nil
        let watchdog = stallWatchdog()
        process.waitForExit()
        watchdog.cancel()
        let already = lock.withLock { defer { reaped = true }; return reaped }
        if already { return "" }
        let text = errors.wait().trimmingCharacters(in: .whitespacesAndNewlines)
        if stalled { return "made no progress for \(Int(stallTimeout)) s and was stopped" + (text.isEmpty ? "" : ": " + text) }
        guard process.terminationStatus != 0 else { return "" }
        return "exited with status \(process.terminationStatus)" + (text.isEmpty ? "" : ": " + text)
    }

    /// Ends the child now (SIGTERM, SIGKILL two seconds later if it is still there) and reaps it.
    func terminate() {
        try? stdin?.close()
        stdin = nil
        if process.isRunning { process.terminate() }
        let pid = process.processIdentifier
        let kill = DispatchWorkItem { [process] in if process.isRunning { Glibc.kill(pid, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 2, execute: kill)
        process.waitForExit()
        kill.cancel()
    }

    /// Terminates the child unless cancelled within `stallTimeout` (then the blocked write or wait returns).
    private func stallWatchdog() -> DispatchWorkItem {
        let item = DispatchWorkItem { [self] in
            guard process.isRunning else { return }
            lock.withLock { killedForStall = true }
            process.terminate()
            let pid = process.processIdentifier
            DispatchQueue.global().asyncAfter(deadline: .now() + 2) { [process] in
                if process.isRunning { Glibc.kill(pid, SIGKILL) }
            }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + stallTimeout, execute: item)
        return item
    }
}

/// Drains a child's stderr on its own thread (a full pipe would block the child), keeping the text, then closes it.
///
/// The close is explicit: on Linux a `Pipe`'s read end stayed open after its `Process`, `Pipe` and `FileHandle`
/// were all released (one descriptor for each ffmpeg run: `reel serve` went from 17 to 89-125 descriptors in
/// 6-minute soaks; `FFmpegProcessTests`).
final class StderrCollector: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var data = Data()

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            let all = handle.readDataToEndOfFile()
            try? handle.close()
            data = all.count > 8192 ? all.suffix(8192) : all
            done.signal()
        }
    }

    func wait() -> String {
        done.wait()
        return String(decoding: data, as: UTF8.self)
    }
}
