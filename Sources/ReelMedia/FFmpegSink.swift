import Foundation
import ReelCore
#if canImport(Glibc)
import Glibc
#endif

/// Writes an H.264 MP4 (yuv420p, plays everywhere) through the system `ffmpeg`: raw RGB frames are
/// piped to its stdin as they arrive, no temporary files. ffmpeg starts with the first block (when
/// the frame size is known); odd sizes are padded to even ones, as yuv420p requires.
///
/// ffmpeg is found through `REEL_FFMPEG` (a path), then `PATH`. Use `VideoSinks.open` to fall back
/// to Y4M when it is missing.
public final class FFmpegSink: FrameSink {
    public let destination: String
    public let fps: Int
    public let executable: String
    private var process: Process?
    private var stdin: FileHandle?
    private var stderrCollector: StderrCollector?
    private var sizeGuard = FrameSizeGuard()
    private var finished = false
    public private(set) var framesWritten = 0

    /// The ffmpeg executable to use, or nil when none is installed.
    public static func findFFmpeg(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        let fm = FileManager.default
        if let override = environment["REEL_FFMPEG"], !override.isEmpty {
            return fm.isExecutableFile(atPath: override) ? override : nil
        }
        for dir in (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = (String(dir) as NSString).appendingPathComponent("ffmpeg")
            if fm.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Throws `ReelError.library` when ffmpeg is not installed.
    public init(path: String, fps: Int = 16, executable: String? = nil) throws {
        try require(fps > 0, "FFmpegSink", "fps must be positive, got \(fps)")
        guard let exe = executable ?? Self.findFFmpeg() else {
            throw ReelError.library(name: "ffmpeg", message: "not found on PATH (install it, e.g. apt-get install ffmpeg, or set REEL_FFMPEG)")
        }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty, !FileManager.default.fileExists(atPath: dir) {
            throw ReelError.badFile(path: path, message: "folder \(dir) does not exist")
        }
        destination = path
        self.fps = fps
        self.executable = exe
    }

    private func start(width: Int, height: Int) throws {
        // A reader that died must not kill us with SIGPIPE: writes then fail with EPIPE instead.
        signal(SIGPIPE, SIG_IGN)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = ["-hide_banner", "-loglevel", "error", "-y",
                       "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "\(width)x\(height)", "-r", "\(fps)", "-i", "-",
                       "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                       "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", destination]
        let input = Pipe(), errors = Pipe()
        p.standardInput = input
        p.standardOutput = FileHandle.nullDevice
        p.standardError = errors
        do { try p.run() } catch {
            throw ReelError.library(name: "ffmpeg", message: "could not start \(executable): \(error.localizedDescription)")
        }
        process = p
        stdin = input.fileHandleForWriting
        stderrCollector = StderrCollector(errors.fileHandleForReading)
    }

    public func write(_ frames: RGBFrames) throws {
        guard !finished else { throw ReelError.invalidArgument(op: "FFmpegSink", message: "write after finish") }
        try sizeGuard.check(frames, sink: "FFmpegSink")
        if process == nil { try start(width: frames.width, height: frames.height) }
        do {
            try stdin?.write(contentsOf: Data(frames.pixels))
        } catch {
            finished = true
            let message = (try? finishProcess()) ?? ""
            throw ReelError.library(name: "ffmpeg", message: message.isEmpty
                ? "could not pipe frames to \(executable): \(error.localizedDescription)"
                : "stopped taking frames: \(message)")
        }
        framesWritten += frames.count
    }

    public func finish() throws {
        guard !finished else { return }
        finished = true
        guard process != nil else { return }
        let message = try finishProcess()
        if !message.isEmpty { throw ReelError.library(name: "ffmpeg", message: message) }
    }

    /// Closes stdin, waits for ffmpeg, and returns an error message ("" when it succeeded).
    private func finishProcess() throws -> String {
        try? stdin?.close()
        stdin = nil
        guard let p = process else { return "" }
        p.waitUntilExit()
        process = nil
        let text = stderrCollector?.wait() ?? ""
        if p.terminationStatus != 0 {
            let detail = text.trimmingCharacters(in: .whitespacesAndNewlines)
            return "exited with status \(p.terminationStatus) writing \(destination)" + (detail.isEmpty ? "" : ": " + detail)
        }
        return ""
    }
}

/// Drains a child's stderr on its own thread (a full pipe would block the child), keeping the text.
final class StderrCollector: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var data = Data()

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            let all = handle.readDataToEndOfFile()
            data = all.count > 8192 ? all.suffix(8192) : all
            done.signal()
        }
    }

    func wait() -> String {
        done.wait()
        return String(decoding: data, as: UTF8.self)
    }
}
