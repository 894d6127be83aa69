import ReelCore

/// Where decoded video goes, block by block as it is decoded: a file being written (MP4, Y4M, PNG
/// sequence) or a live stream. Every block of one video has the same frame size.
public protocol FrameSink: AnyObject {
    /// Where the frames end up (a path), for messages.
    var destination: String { get }
    /// Frames per second the video plays at.
    var fps: Int { get }
    /// Appends a block of frames.
    func write(_ frames: RGBFrames) throws
    /// Completes the video (flushes, closes, waits for an encoder). No writes after this.
    func finish() throws
}

/// Checks that a sink receives frames of one size.
struct FrameSizeGuard {
    private(set) var size: (width: Int, height: Int)?

    mutating func check(_ frames: RGBFrames, sink: String) throws {
        if let size {
            guard size.width == frames.width, size.height == frames.height else {
                throw ReelError.invalidArgument(op: sink, message: "frames of \(frames.width)x\(frames.height) after \(size.width)x\(size.height): one video has one frame size")
            }
        } else {
            size = (frames.width, frames.height)
        }
    }
}
