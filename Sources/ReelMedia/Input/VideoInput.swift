import ReelCore

/// A source of video frames to condition on: a Y4M file or pipe, a PNG, anything ffmpeg decodes.
///
/// Frames come one at a time, each an `RGBFrames` of count 1, in the size the source states. A live
/// source (a pipe, stdin, a camera through ffmpeg) blocks in `nextFrame()` until the frame arrives;
/// with a stall timeout it throws instead when none comes in time. Errors are `ReelError`s that name
/// the source (`ReelError.badFile(path:message:)` for malformed, truncated or stalled data).
public protocol VideoInput: AnyObject {
    /// What the frames are read from (a path, `-` for stdin), for messages.
    var source: String { get }
    /// Frame width in pixels, as the source states it.
    var width: Int { get }
    /// Frame height in pixels, as the source states it.
    var height: Int { get }
    /// Frames per second, when the format states it (nil for images and unknown rates).
    var frameRate: FrameRate? { get }
    /// The next frame, or nil at a clean end of the input. Throws on malformed or truncated data,
    /// or when a stall timeout passes without a frame.
    func nextFrame() throws -> RGBFrames?
    /// Stops reading and releases what the input holds (files, child processes). Idempotent;
    /// `nextFrame()` returns nil afterwards.
    func close()
}

/// A frame rate as the rational number containers store (30000:1001 is NTSC's 29.97).
public struct FrameRate: Sendable, Equatable, CustomStringConvertible {
    /// Frames per `denominator` seconds; both positive.
    public let numerator: Int
    public let denominator: Int

    /// Throws unless both parts are positive (and small enough for exact frame-time arithmetic).
    public init(_ numerator: Int, _ denominator: Int = 1) throws {
        guard numerator > 0, denominator > 0, numerator <= 1 << 31, denominator <= 1 << 31 else {
            throw ReelError.invalidArgument(op: "FrameRate", message: "\(numerator):\(denominator) is not a valid rate")
        }
        let g = gcd(numerator, denominator)
        self.numerator = numerator / g
        self.denominator = denominator / g
    }

    /// The rate in frames per second.
    public var framesPerSecond: Double { Double(numerator) / Double(denominator) }

    public var description: String {
        denominator == 1 ? "\(numerator) fps" : "\(numerator):\(denominator) fps"
    }
}

func gcd(_ a: Int, _ b: Int) -> Int {
    var (a, b) = (abs(a), abs(b))
    while b != 0 { (a, b) = (b, a % b) }
    return max(a, 1)
}
