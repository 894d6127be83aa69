import ReelMedia

/// A video `reel eval` asks for: prompts, the blocks where later prompts start, a length in blocks.
///
/// Frames per block follow the decoders' temporal stride of 4 (Wan VAE, TAEHV): latent frame 0 is video
/// frame 0 and latent k >= 1 is video frames 4k-3...4k, so block 0 (latents 0-2) is 9 frames and every
/// later block 12; a switch at block b (latent frame 3b) starts at video frame 12b - 3.
public struct VideoPlan: Sendable {
    public var scenes: [Scene]
    /// The text given to the model for each scene (its caption unless given otherwise).
    public var prompts: [String]
    /// Block at which scene i + 1 starts, ascending, each > 0.
    public var switchBlocks: [Int]
    public var blocks: Int
    /// Seed of the generator's noise.
    public var seed: UInt64
    public let timeline: SceneTimeline

    public init(scenes: [Scene], prompts: [String]? = nil, switchBlocks: [Int] = [], blocks: Int, seed: UInt64, frameSize: Int) {
        precondition(scenes.count == switchBlocks.count + 1, "one switch block per later scene")
        self.scenes = scenes
        self.prompts = prompts ?? scenes.map(\.caption)
        self.switchBlocks = switchBlocks
        self.blocks = blocks
        self.seed = seed
        var segments = [SceneTimeline.Segment(start: 0, scene: scenes[0])]
        for (i, b) in switchBlocks.enumerated() {
            segments.append(SceneTimeline.Segment(start: Self.firstFrame(ofBlock: b), scene: scenes[i + 1]))
        }
        timeline = SceneTimeline(segments, frameSize: frameSize)
    }

    public var latentFrames: Int { 3 * blocks }
    public var frames: Int { Self.firstFrame(ofBlock: blocks) }

    /// First video frame of block b.
    public static func firstFrame(ofBlock b: Int) -> Int { b == 0 ? 0 : 12 * b - 3 }
    public static func frames(inBlock b: Int) -> Int { b == 0 ? 9 : 12 }

    /// The prompt index in effect at latent frame `frame` (scene i + 1 from latent frame 3 * switchBlocks[i]).
    public func promptIndex(atLatentFrame frame: Int) -> Int {
        switchBlocks.prefix { 3 * $0 <= frame }.count
    }

    /// The prompt index that starts at latent frame `frame` (a block start), if one does.
    public func promptStarting(atLatentFrame frame: Int) -> Int? {
        switchBlocks.firstIndex(of: frame / 3).map { $0 + 1 }
    }
}

/// Where the frames come from: a model, or the ground truth drawn (the analysis' ceiling).
public protocol FrameSource {
    /// One line: what makes the frames.
    var summary: String { get }
    /// Makes the video of `plan` and hands each block's frames to `body` as soon as they exist, in order;
    /// the next block is not kept waiting in memory beyond what the source itself holds.
    func generate(_ plan: VideoPlan, _ body: (RGBFrames) async throws -> Void) async throws
}

/// The ground truth drawn as the data set draws it: what a perfect model would make.
public struct ReferenceFrameSource: FrameSource {
    public let renderer: SceneRenderer
    public init(frameSize: Int) { renderer = SceneRenderer(frameSize: frameSize) }

    public var summary: String { "reference: the ground truth drawn (the analysis' ceiling)" }

    public func generate(_ plan: VideoPlan, _ body: (RGBFrames) async throws -> Void) async throws {
        for b in 0..<plan.blocks {
            let first = VideoPlan.firstFrame(ofBlock: b)
            try await body(try renderer.render(plan.timeline, frames: first..<(first + VideoPlan.frames(inBlock: b))))
        }
    }
}
