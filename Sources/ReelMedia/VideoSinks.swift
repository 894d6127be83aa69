import Foundation
import ReelCore

/// Output formats for decoded video.
public enum VideoFormat: String, CaseIterable, Sendable {
    /// H.264 in MP4 through the system ffmpeg.
    case mp4
    /// YUV4MPEG2, built in.
    case y4m
    /// A folder of PNG files, built in.
    case png

    /// The format a path asks for: `.mp4` / `.mov` / `.mkv` -> mp4, `.y4m` -> y4m, anything else
    /// (a folder, a path ending in `/`, no extension) -> png sequence.
    public init(path: String) {
        switch (path as NSString).pathExtension.lowercased() {
        case "mp4", "mov", "mkv", "m4v": self = .mp4
        case "y4m": self = .y4m
        default: self = .png
        }
    }
}

/// Opens the right sink for an output path.
public enum VideoSinks {
    /// A sink for `path`: a live output when it is a URL (`LiveDestination`: rtmp://, rtmps://, srt://, udp://,
    /// encoded as `live` says; ffmpeg is required), else a file chosen by `VideoFormat(path:)` unless `format` is
    /// given. When MP4 is asked for and ffmpeg is missing, it says so through `notice` and writes Y4M next to it
    /// (`out.mp4` -> `out.y4m`), which opens without installing anything.
    public static func open(path: String, format: VideoFormat? = nil, fps: Int = 16, live: LiveStreamOptions = LiveStreamOptions(),
                            environment: [String: String] = ProcessInfo.processInfo.environment,
                            notice: (String) -> Void = { _ in }) throws -> any FrameSink {
        if format == nil, LiveDestination.isURL(path) {
            let destination = try LiveDestination(url: path)
            guard let ffmpeg = FFmpegSink.findFFmpeg(environment: environment) else {
                throw ReelError.library(name: "ffmpeg", message: "not found on PATH, needed to stream to \(destination) "
                    + "(install it, e.g. apt-get install ffmpeg, or set REEL_FFMPEG)")
            }
            return try LiveStreamSink(destination: destination, fps: fps, options: live, executable: ffmpeg)
        }
        switch format ?? VideoFormat(path: path) {
        case .y4m:
            return try Y4MSink(path: path, fps: fps)
        case .png:
            return try PNGSequenceSink(directory: path, fps: fps)
        case .mp4:
            if let ffmpeg = FFmpegSink.findFFmpeg(environment: environment) {
                return try FFmpegSink(path: path, fps: fps, executable: ffmpeg)
            }
            let fallback = ((path as NSString).deletingPathExtension) + ".y4m"
            notice("ffmpeg was not found on PATH, so \(path) cannot be written as MP4; writing \(fallback) "
                + "(Y4M: plays in mpv, ffplay and VLC). Install ffmpeg (apt-get install ffmpeg) or set REEL_FFMPEG for MP4.")
            return try Y4MSink(path: fallback, fps: fps)
        }
    }
}
