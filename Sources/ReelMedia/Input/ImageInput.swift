import Foundation
import ReelCore

/// A still image as a one-frame input: PNG decoded by `PNGDecoder`, baseline JPEG by `JPEGDecoder`, anything
/// else (progressive JPEG, WebP, BMP, ...) through ffmpeg's first frame. It has no frame rate; `FittedInput` shows
/// it as one frame.
public final class ImageInput: VideoInput {
    public let source: String
    /// The image.
    public let frame: RGBFrames
    public var width: Int { frame.width }
    public var height: Int { frame.height }
    public var frameRate: FrameRate? { nil }
    private var delivered = false

    /// The image at `path`: a PNG or a baseline JPEG (by its signature) is decoded in process, others through
    /// ffmpeg (a JPEG this decoder refuses names why when ffmpeg is missing).
    public convenience init(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let kind = VideoInputKind(path: path, leadingBytes: try leadingBytes(of: path))
        if kind == .png {
            try self.init(frame: PNGDecoder.decode(path: path), source: path)
        } else if kind == .jpeg, let data = FileManager.default.contents(atPath: path),
                  JPEGDecoder.unsupportedFeature([UInt8](data)) == nil
                      || FFmpegSink.findFFmpeg(environment: environment) == nil {
            try self.init(frame: JPEGDecoder.decode([UInt8](data), source: path), source: path)
        } else {
            let input = try FFmpegInput(path: path, maxFrames: 1, environment: environment)
            defer { input.close() }
            guard let frame = try input.nextFrame() else {
                throw ReelError.badFile(path: path, message: "ffmpeg decoded no image from it")
            }
            try self.init(frame: frame, source: path)
        }
    }

    /// A frame already in memory (the first of `frame` if it holds several).
    public init(frame: RGBFrames, source: String) throws {
        guard frame.count >= 1 else { throw ReelError.badFile(path: source, message: "no frame") }
        self.frame = frame.count == 1 ? frame
            : try RGBFrames(width: frame.width, height: frame.height, pixels: Array(frame.frame(0)))
        self.source = source
    }

    public func nextFrame() throws -> RGBFrames? {
        guard !delivered else { return nil }
        delivered = true
        return frame
    }

    public func close() { delivered = true }
}
