import Foundation
import ReelCore

/// Reads a YUV4MPEG2 stream (format: see `Y4MHeader`) frame by frame from a file, a pipe or stdin,
/// converting each frame to RGB8 (`YCbCr.rgb`). Memory stays flat: one frame's planes are kept and
/// reused. The header is read when the reader is made, so `width`, `height` and `frameRate` are known
/// before the first frame (on a pipe this waits for the header, under the stall timeout if one is set).
public final class Y4MReader: VideoInput {
    public let source: String
    /// The stream header, read when the reader was made.
    public let header: Y4MHeader
    public var width: Int { header.width }
    public var height: Int { header.height }
    public var frameRate: FrameRate? { header.frameRate }
    /// Frames returned so far.
    public private(set) var framesRead = 0
    private let stream: DescriptorReader
    private var planes: [UInt8]
    private var ended = false

    /// Opens a `.y4m` file.
    public convenience init(path: String, stallTimeout: Double? = nil) throws {
        try self.init(stream: DescriptorReader(path: path, stallTimeout: stallTimeout))
    }

    /// Reads from an open descriptor (a pipe, a socket, 0 for stdin), which stays open after `close()`.
    /// `stallTimeout` seconds without a frame make `nextFrame()` throw; nil waits for ever.
    public convenience init(fileDescriptor: Int32, source: String, stallTimeout: Double? = nil) throws {
        try self.init(stream: DescriptorReader(fd: fileDescriptor, source: source, ownsDescriptor: false,
                                          stallTimeout: stallTimeout))
    }

    /// Reads from a `FileHandle` (e.g. `FileHandle.standardInput`), which stays open after `close()`.
    public convenience init(handle: FileHandle, source: String, stallTimeout: Double? = nil) throws {
        try self.init(fileDescriptor: handle.fileDescriptor, source: source, stallTimeout: stallTimeout)
    }

    /// Y4M on standard input, named `-` in messages.
    public static func standardInput(stallTimeout: Double? = nil) throws -> Y4MReader {
        try Y4MReader(fileDescriptor: 0, source: "-", stallTimeout: stallTimeout)
    }

    init(stream: DescriptorReader) throws {
        self.stream = stream
        source = stream.source
        stream.beginWait()
        guard let line = try stream.readLine(limit: 4096, what: "Y4M header") else {
            throw ReelError.badFile(path: stream.source, message: "empty input: no Y4M header")
        }
        header = try Y4MHeader(line: line, source: stream.source)
        planes = [UInt8](repeating: 0, count: header.frameBytes)
    }

    public func nextFrame() throws -> RGBFrames? {
        guard !ended else { return nil }
        stream.beginWait()
        guard let line = try stream.readLine(limit: 4096, what: "FRAME line") else {
            ended = true
            return nil
        }
        guard line.starts(with: Array("FRAME".utf8)), line.count == 5 || line[5] == 0x20 else {
            ended = true
            let shown = String(decoding: line.prefix(16), as: UTF8.self)
            throw ReelError.badFile(path: source, message: "frame \(framesRead): expected FRAME, found \"\(shown)\"")
        }
        let n = try stream.read(into: &planes, offset: 0, count: planes.count)
        guard n == planes.count else {
            ended = true
            throw ReelError.badFile(path: source,
                                    message: "frame \(framesRead) truncated: \(n) of \(planes.count) bytes")
        }
        framesRead += 1
        return try RGBFrames(width: width, height: height, pixels: YCbCr.rgb(planes: planes, header: header))
    }

    public func close() {
        ended = true
        stream.close()
    }
}
