import Foundation
import ReelCore

/// Reads any video or image ffmpeg can decode (MP4, WebM, MOV, MKV, JPEG, ...) by running ffmpeg
/// with the frames on a pipe as Y4M (`-f yuv4mpegpipe -pix_fmt yuv444p`, full chroma) and reading them
/// with `Y4MReader`. Audio and subtitles are ignored. ffmpeg is found as `FFmpegSink` finds it
/// (`REEL_FFMPEG`, then `PATH`).
///
/// When ffmpeg is missing, cannot open the file or stops with an error, the `ReelError` names the file
/// and carries the end of ffmpeg's stderr. `close()` (or releasing the input) stops ffmpeg.
public final class FFmpegInput: VideoInput {
    public let source: String
    /// The ffmpeg binary that decodes it.
    public let executable: String
    public var width: Int { reader.width }
    public var height: Int { reader.height }
    public var frameRate: FrameRate? { reader.frameRate }
    private let process: Process
    private let output: FileHandle
    private let errors: StderrCollector
    private let stream: DescriptorReader
    private var reader: Y4MReader!
    private var closed = false

    /// Starts ffmpeg on `path` and reads the stream header (so the size and rate are known). `maxFrames`
    /// stops after that many frames (1 for an image); `stallTimeout` as in `Y4MReader`.
    public init(path: String, stallTimeout: Double? = nil, maxFrames: Int? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard let exe = FFmpegSink.findFFmpeg(environment: environment) else {
            throw ReelError.library(name: "ffmpeg", message: "not found on PATH, needed to read \(path) "
                + "(install it, e.g. apt-get install ffmpeg, or set REEL_FFMPEG; Y4M and PNG are read without it)")
        }
        source = path
        executable = exe
        process = Process()
        process.executableURL = URL(fileURLWithPath: exe)
        var arguments = ["-hide_banner", "-loglevel", "error", "-nostdin", "-i", path, "-an", "-sn"]
        if let maxFrames { arguments += ["-frames:v", "\(max(1, maxFrames))"] }
        process.arguments = arguments + ["-f", "yuv4mpegpipe", "-pix_fmt", "yuv444p", "pipe:1"]
        let out = Pipe(), err = Pipe()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        output = out.fileHandleForReading
        stream = try DescriptorReader(fd: output.fileDescriptor, source: path, ownsDescriptor: false,
                                      stallTimeout: stallTimeout)
        do { try process.run() } catch {
            throw ReelError.library(name: "ffmpeg", message: "could not start \(exe) to read \(path): "
                + error.localizedDescription)
        }
        errors = StderrCollector(err.fileHandleForReading)
        do {
            reader = try Y4MReader(stream: stream)
        } catch {
            throw failure(after: error)
        }
    }

    deinit { close() }

    public func nextFrame() throws -> RGBFrames? {
        guard !closed else { return nil }
        do {
            if let frame = try reader.nextFrame() { return frame }
        } catch {
            throw failure(after: error)
        }
        // A clean end of the pipe: ffmpeg must also have succeeded.
        process.waitForExit()
        if process.terminationStatus != 0 { throw failure(after: nil) }
        close()
        return nil
    }

    public func close() {
        guard !closed else { return }
        closed = true
        reader?.close()
        try? output.close()
        stop(after: 0)
    }

    /// Waits up to `grace` seconds for ffmpeg to exit, then asks it to stop (SIGTERM) and, if it has not
    /// within half a second (ffmpeg blocked in open() on a FIFO restarts the call), kills it. True when it had
    /// to be stopped.
    @discardableResult
    private func stop(after grace: Double) -> Bool {
        func waitExit(_ seconds: Double) {
            let deadline = DispatchTime.now() + seconds
            while process.isRunning, DispatchTime.now() < deadline { usleep(5_000) }
        }
        waitExit(grace)
        guard process.isRunning else { return false }
        process.terminate()
        waitExit(0.5)
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitForExit()
        return true
    }

    /// The error to report once reading failed: ffmpeg's own when it failed (exit status and the end of
    /// its stderr), else `error`. Stops ffmpeg.
    private func failure(after error: Error?) -> Error {
        let fallback = error ?? ReelError.badFile(path: source, message: "ffmpeg stopped")
        if closed { return fallback }
        if stream.stalled {
            close()
            return fallback
        }
        closed = true
        reader?.close()
        try? output.close()
        // On a bad header or a cut frame ffmpeg is usually exiting with an error; give it a moment.
        if stop(after: 2) { return fallback }
        let status = process.terminationStatus
        let tail = String(errors.wait().trimmingCharacters(in: .whitespacesAndNewlines).suffix(600))
        guard status != 0 || error == nil else { return fallback }
        return ReelError.badFile(path: source, message: "ffmpeg could not decode it (exit status \(status))"
            + (tail.isEmpty ? "" : ": " + tail))
    }
}
