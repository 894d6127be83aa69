/// A request that `reel eval` cannot run, with what to change.
public struct EvalError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What `reel eval` generates and measures.
public struct EvalOptions: Sendable {
    /// Square frames of this size (the tiny model's data set is 128 x 128).
    public var frameSize = 128
    /// Seeds the prompts drawn from the grammar and the generators' noise.
    public var seed: UInt64 = 0
    /// Prompt adherence: videos of one prompt each, and their length in blocks.
    public var prompts = 40
    public var blocksPerPrompt = 4
    /// Switch responsiveness: videos that switch one attribute at `switchBlock`, then run
    /// `blocksFromSwitch` blocks with the new prompt.
    public var switches = 12
    public var switchBlock = 2
    public var blocksFromSwitch = 4
    /// Long-horizon stability: one video of at least this many frames (0: none), measured in windows of
    /// `windowBlocks` blocks.
    public var longFrames = 1197
    public var windowBlocks = 8
    /// The long run's prompt (a caption of the grammar); nil draws one that moves (wrapping at the edges).
    public var longPrompt: String?
    /// Frames per second of the drawn inputs (the tiny model's 16).
    public var fps = 16
    /// Video-to-video: videos, input frames each (5 + 4k), the noise scale and denoising steps (StreamDiffusionV2's
    /// schedule, as `reel generate --input` runs it).
    public var restyleVideos = 0
    public var restyleFrames = 65
    public var noiseScale = 0.8
    public var restyleSteps = 2
    /// Image-to-video: videos and their blocks (the image's still block included).
    public var animateVideos = 0
    public var animateBlocks = 4

    public init() {}

    public func validate() throws(EvalError) {
        guard frameSize >= 32, frameSize % 16 == 0 else {
            throw EvalError("--size must be a multiple of 16 of at least 32, got \(frameSize)")
        }
        guard prompts >= 0, switches >= 0, longFrames >= 0, restyleVideos >= 0, animateVideos >= 0 else {
            throw EvalError("--prompts, --switches, --long-frames, --restyle and --animate must not be negative")
        }
        guard prompts + switches + restyleVideos + animateVideos > 0 || longFrames > 0 else {
            throw EvalError("nothing to measure: --prompts, --switches, --long-frames, --restyle and --animate are all 0")
        }
        guard restyleFrames >= 5, (restyleFrames - 5) % 4 == 0 else {
            throw EvalError("--restyle-frames must be 5 + 4k (5 frames make the first block, 4 each later one), got \(restyleFrames)")
        }
        guard noiseScale > 0, noiseScale < 1 else { throw EvalError("--noise-scale must lie in (0, 1), got \(noiseScale)") }
        guard (1...4).contains(restyleSteps) else { throw EvalError("--steps must be 1 to 4, got \(restyleSteps)") }
        guard animateBlocks >= 2 else { throw EvalError("--animate-blocks must be at least 2 (the image's block and one generated), got \(animateBlocks)") }
        guard fps >= 1 else { throw EvalError("--fps must be positive, got \(fps)") }
        guard blocksPerPrompt >= 1 else { throw EvalError("--blocks must be at least 1, got \(blocksPerPrompt)") }
        guard switchBlock >= 1 else {
            throw EvalError("--switch-block must be at least 1 (a block of the first prompt comes before), got \(switchBlock)")
        }
        guard blocksFromSwitch >= 1 else { throw EvalError("--blocks-after-switch must be at least 1, got \(blocksFromSwitch)") }
        guard windowBlocks >= 1 else { throw EvalError("--window-blocks must be at least 1, got \(windowBlocks)") }
        if let longPrompt {
            do { _ = try Scene(caption: longPrompt) } catch { throw EvalError("--long-prompt: \(error)") }
        }
    }

    /// Blocks of the long run: enough for `longFrames` frames.
    public var longBlocks: Int { longFrames == 0 ? 0 : max(1, (longFrames + 3 + 11) / 12) }
}
