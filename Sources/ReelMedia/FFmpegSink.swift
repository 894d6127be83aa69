import Foundation
import ReelCore

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
    private var process: FFmpegProcess?
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
        process = try FFmpegProcess(executable: executable, arguments: [
            "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "\(width)x\(height)", "-r", "\(fps)", "-i", "-",
            "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", destination],
            stallTimeout: 300)   // a file: only a wedged ffmpeg takes this long for a block or the faststart rewrite
    }

    public func write(_ frames: RGBFrames) throws {
        guard !finished else { throw ReelError.invalidArgument(op: "FFmpegSink", message: "write after finish") }
        try sizeGuard.check(frames, sink: "FFmpegSink")
        if process == nil { try start(width: frames.width, height: frames.height) }
        do {
            try process?.write(Data(frames.pixels))
        } catch {
            finished = true
            let message = finishProcess()
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
        let message = finishProcess()
        if !message.isEmpty { throw ReelError.library(name: "ffmpeg", message: message) }
    }

    /// Closes ffmpeg's input, waits for it, and returns an error message ("" when it succeeded).
    private func finishProcess() -> String {
        guard let p = process else { return "" }
        process = nil
        let message = p.finish()
        return message.isEmpty ? "" : message + " writing \(destination)"
    }
}

