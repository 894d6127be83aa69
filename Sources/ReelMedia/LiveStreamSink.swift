import Foundation
import ReelCore

/// How a live output is encoded: H.264 (libx264, `zerolatency`: no B-frames, no lookahead, a frame out per frame
/// in) at a constant bitrate with a keyframe every `keyframeSeconds`, as streaming servers ask (YouTube and
/// Twitch want one every 2 s).
public struct LiveStreamOptions: Sendable, Equatable {
    /// Video bitrate in kbit/s (also the rate cap; the VBV buffer holds one second).
    public var bitrateKbps = 2500
    public var keyframeSeconds = 2
    /// libx264's preset: `veryfast` keeps up with 832x480 at 30 FPS on one core.
    public var preset = "veryfast"
    /// A write or the end that makes no progress for this long (a server that stopped reading) stops ffmpeg.
    public var stallSeconds = 10.0

    public init(bitrateKbps: Int = 2500) { self.bitrateKbps = bitrateKbps }
}

/// Pushes the video live to a streaming server or player (`LiveDestination`: RTMP in FLV, SRT or UDP in MPEG-TS)
/// through the system ffmpeg while it is generated.
///
/// Pacing: frames leave at the video's frame rate at most. Frame n is written at `max(due, now)`, where due is
/// one frame interval after frame n-1 was written: a video made faster than real time is held to real time (a
/// server is never flooded, and the model waits through the pipeline's bounded channels); one made slower goes
/// out as it comes, without bursting to catch up after a slow block.
///
/// A connection that drops (the server goes away, RTMP or SRT reset) makes ffmpeg exit, and the next write
/// throws a `ReelError` that names the address and carries ffmpeg's reason; ffmpeg is reaped. UDP has no
/// connection: a port with no listener is reported (ICMP port unreachable, through a connected socket) where the
/// network returns it, as loopback does.
public final class LiveStreamSink: FrameSink {
    public let destinationAddress: LiveDestination
    public var destination: String { destinationAddress.url }
    public let fps: Int
    public let options: LiveStreamOptions
    public let executable: String
    public private(set) var framesWritten = 0
    private var process: FFmpegProcess?
    /// The ffmpeg child's id once started (tests check that it is reaped).
    private(set) var ffmpegProcessID: Int32?
    private var sizeGuard = FrameSizeGuard()
    private var nextDue: ContinuousClock.Instant?
    private var finished = false

    /// Throws `ReelError.library` when ffmpeg is not installed.
    public init(destination: LiveDestination, fps: Int, options: LiveStreamOptions = LiveStreamOptions(),
                executable: String? = nil) throws {
        try require(fps > 0, "LiveStreamSink", "fps must be positive, got \(fps)")
        try require(options.bitrateKbps > 0, "LiveStreamSink", "the bitrate must be positive, got \(options.bitrateKbps)")
        guard let exe = executable ?? FFmpegSink.findFFmpeg() else {
            throw ReelError.library(name: "ffmpeg", message: "not found on PATH, needed to stream to \(destination) "
                + "(install it, e.g. apt-get install ffmpeg, or set REEL_FFMPEG)")
        }
        destinationAddress = destination
        self.fps = fps
        self.options = options
        self.executable = exe
    }

    /// ffmpeg's arguments for frames of `width` x `height`.
    func arguments(width: Int, height: Int) -> [String] {
        let rate = "\(options.bitrateKbps)k"
        var args = ["-hide_banner", "-loglevel", "error",
                    "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "\(width)x\(height)", "-r", "\(fps)", "-i", "-",
                    "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                    "-c:v", "libx264", "-preset", options.preset, "-tune", "zerolatency", "-pix_fmt", "yuv420p",
                    "-b:v", rate, "-maxrate", rate, "-bufsize", rate,
                    "-g", "\(fps * options.keyframeSeconds)", "-sc_threshold", "0",
                    "-f", destinationAddress.transport.container]
        if destinationAddress.transport.container == "flv" { args += ["-flvflags", "no_duration_filesize"] }
        return args + [destinationAddress.ffmpegURL]
    }

    public func write(_ frames: RGBFrames) throws {
        guard !finished else { throw ReelError.invalidArgument(op: "LiveStreamSink", message: "write after finish") }
        try sizeGuard.check(frames, sink: "LiveStreamSink")
        if process == nil {
            process = try FFmpegProcess(executable: executable, arguments: arguments(width: frames.width, height: frames.height),
                                        stallTimeout: options.stallSeconds)
            ffmpegProcessID = process?.processIdentifier
        }
        let interval = Duration.seconds(1.0 / Double(fps))
        for i in 0..<frames.count {
            let now = ContinuousClock.now
            let due = max(nextDue ?? now, now)
            if due > now { Thread.sleep(forTimeInterval: (due - now).seconds) }
            nextDue = due + interval
            do {
                try process?.write(Data(frames.frame(i)))
            } catch {
                throw stopped(writeError: error)
            }
            framesWritten += 1
        }
    }

    public func finish() throws {
        guard !finished else { return }
        finished = true
        guard let p = process else { return }
        process = nil
        // The connection stays open a moment after the last frame (SRT: see `LiveDestination.closeHold`).
        if framesWritten > 0 && destinationAddress.closeHold > 0 { Thread.sleep(forTimeInterval: destinationAddress.closeHold) }
        let message = p.finish()
        if !message.isEmpty {
            throw ReelError.library(name: "ffmpeg", message: "the live output \(destination) ended with an error "
                                    + "after \(framesWritten) frames: \(message)")
        }
    }

    /// The error for a write that failed: ffmpeg has exited (its reason) or stalled; ffmpeg is reaped.
    private func stopped(writeError: any Error) -> ReelError {
        finished = true
        let message = process?.finish() ?? ""
        process = nil
        var reason = message.isEmpty ? "ffmpeg stopped taking frames (\(writeError.localizedDescription))" : "ffmpeg " + message
        if destinationAddress.transport == .srt {
            reason += " (SRT reports a lost peer as an input/output error, after its 5 s peer timeout)"
        }
        return ReelError.library(name: "live output", message: "the connection to \(destination) was lost after "
                                 + "\(framesWritten) frames: \(reason)")
    }
}
