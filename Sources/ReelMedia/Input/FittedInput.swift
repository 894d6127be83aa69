import ReelCore

/// An input fitted to the size and frame rate the model generates at: each frame scaled to cover
/// `width x height` and centre-cropped (`FrameFit`), frames repeated or skipped by timestamp to play at
/// `frameRate` (`FrameTiming`). Inputs without a stated rate (images, `F0:0` streams), or a nil target
/// rate, pass one output frame per input frame. Skipped frames are read but never resized.
public final class FittedInput: VideoInput {
    /// The input being fitted.
    public let input: any VideoInput
    public let width: Int
    public let height: Int
    public let frameRate: FrameRate?
    public var source: String { input.source }
    /// Output frames returned so far.
    public private(set) var framesProduced = 0
    private var inputIndex = -1           // index of `current` in the input
    private var current: RGBFrames?       // the last input frame read
    private var fitted: RGBFrames?        // `current` after fitting, reused while it repeats

    /// Fits `input` to `width x height` at `frameRate` (nil: the input's own timing).
    public init(_ input: any VideoInput, width: Int, height: Int, frameRate: FrameRate?) throws {
        guard width > 0, height > 0, width * height <= Y4MHeader.maxPixels else {
            throw ReelError.invalidArgument(op: "FittedInput", message: "target size \(width)x\(height) is not valid")
        }
        self.input = input
        self.width = width
        self.height = height
        self.frameRate = frameRate
    }

    public func nextFrame() throws -> RGBFrames? {
        let target: Int
        if let inRate = input.frameRate, let outRate = frameRate {
            target = FrameTiming.inputFrame(forOutputFrame: framesProduced, input: inRate, output: outRate)
        } else {
            target = inputIndex + 1
        }
        while inputIndex < target {
            guard let frame = try input.nextFrame() else { return nil }
            inputIndex += 1
            current = frame
            fitted = nil
        }
        guard let current else { return nil }
        if fitted == nil { fitted = try FrameFit.cover(current, width: width, height: height) }
        framesProduced += 1
        return fitted
    }

    public func close() { input.close() }
}
