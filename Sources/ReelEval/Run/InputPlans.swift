import Foundation
import ReelCore
import ReelMedia

/// A video-to-video measurement: an input drawn by the scene renderer (one scene from `start`) and a prompt
/// that changes its colour, its background or both. The output should show the prompt's colours where the
/// input's object is, moving as it moves.
public struct RestylePlan: Sendable {
    public enum Change: String, Sendable, Codable, CaseIterable { case colour, background, both }

    public var input: Scene
    public var prompt: Scene
    public var change: Change
    /// Where the input's object starts (the data set's videos start at the centre; inputs start anywhere).
    public var start: Point
    /// Input frames (5 for the first block, then 4 a block: `frames` = 5 + 4k).
    public var frames: Int
    public var seed: UInt64
    public let inputTimeline: SceneTimeline
    /// The input's motion in the prompt's colours: what a perfect restyle shows.
    public let targetTimeline: SceneTimeline

    public init(input: Scene, prompt: Scene, change: Change, start: Point, frames: Int, seed: UInt64, frameSize: Int) {
        self.input = input
        self.prompt = prompt
        self.change = change
        self.start = start
        self.frames = frames
        self.seed = seed
        inputTimeline = SceneTimeline([.init(start: 0, scene: input)], frameSize: frameSize, start: start)
        targetTimeline = SceneTimeline([.init(start: 0, scene: prompt)], frameSize: frameSize, start: start)
    }
}

/// An image-to-video measurement: a drawn frame with the object at `start` opens the video (shown as a
/// still first block, as `reel generate --image` does); the prompt names the same object with a motion.
/// The object should start where the image has it, then move as prompted.
public struct AnimatePlan: Sendable {
    public var scene: Scene
    public var start: Point
    /// Blocks of the whole video, the still block included.
    public var blocks: Int
    public var seed: UInt64
    /// The prompt's motion from `start`, frame 0 being the still block's last frame (video frame 8).
    public let timeline: SceneTimeline

    public init(scene: Scene, start: Point, blocks: Int, seed: UInt64, frameSize: Int) {
        self.scene = scene
        self.start = start
        self.blocks = blocks
        self.seed = seed
        timeline = SceneTimeline([.init(start: 0, scene: scene)], frameSize: frameSize, start: start)
    }

    /// Video frames of the still block.
    public static let stillFrames = VideoPlan.frames(inBlock: 0)
    public var frames: Int { VideoPlan.firstFrame(ofBlock: blocks) }

    /// What video frame `k` should show (the still block: the image).
    public func truth(at k: Int) -> FrameTruth { timeline.truth(at: max(0, k - (Self.stillFrames - 1))) }
}

extension EvalRunner {
    /// The video-to-video plans: changes cycle colour, background, both; starts drawn inside the frame at least
    /// a quarter of the frame from the centre (where text-to-video would put the object).
    public func restylePlans() -> [RestylePlan] {
        var sampler = PromptSampler(seed: options.seed ^ 0x5245_5354_594C)
        let geometry = SceneGeometry(frameSize: options.frameSize)
        return (0..<options.restyleVideos).map { i in
            let change = RestylePlan.Change.allCases[i % RestylePlan.Change.allCases.count]
            while true {
                let input = sampler.scene()
                let start = Self.offCentreStart(for: input, sampler: &sampler, geometry: geometry)
                var prompt: Scene? = input
                if change != .colour { prompt = prompt.flatMap { sampler.switched($0, kind: .background, centre: start, geometry: geometry) } }
                if change != .background { prompt = prompt.flatMap { sampler.switched($0, kind: .colour, centre: start, geometry: geometry) } }
                if let prompt {
                    return RestylePlan(input: input, prompt: prompt, change: change, start: start, frames: options.restyleFrames,
                                       seed: options.seed &+ 30_000 &+ UInt64(i), frameSize: options.frameSize)
                }
            }
        }
    }

    /// The image-to-video plans: a drawn scene that moves, its object placed off centre.
    public func animatePlans() -> [AnimatePlan] {
        var sampler = PromptSampler(seed: options.seed ^ 0x494D_4147_45)
        let geometry = SceneGeometry(frameSize: options.frameSize)
        return (0..<options.animateVideos).map { i in
            var scene = sampler.scene()
            while scene.object?.motion == .staysStill { scene = sampler.scene() }
            let start = Self.offCentreStart(for: scene, sampler: &sampler, geometry: geometry)
            return AnimatePlan(scene: scene, start: start, blocks: options.animateBlocks, seed: options.seed &+ 40_000 &+ UInt64(i),
                               frameSize: options.frameSize)
        }
    }

    static func offCentreStart(for scene: Scene, sampler: inout PromptSampler, geometry: SceneGeometry) -> Point {
        let s = Double(geometry.frameSize)
        let r = scene.object.map { geometry.radius($0.size) } ?? 0
        while true {
            let p = Point(Double.random(in: r...(s - r), using: &sampler.rng), Double.random(in: r...(s - r), using: &sampler.rng))
            if p.wrappedOffset(from: Point(s / 2, s / 2), size: s).length >= s / 4 { return p }
        }
    }
}

/// A drawn scene as a video input: the timeline's frames rendered as they are read, counted (the count is
/// read from the consumer's thread while the pipeline's Input stage reads).
public final class SceneInput: VideoInput, @unchecked Sendable {
    public let source: String
    public let width: Int
    public let height: Int
    public let frameRate: FrameRate?
    private let timeline: SceneTimeline
    private let renderer: SceneRenderer
    private let frames: Int
    private let lock = NSLock()
    private var read = 0
    private var closed = false

    public init(timeline: SceneTimeline, frames: Int, frameSize: Int, fps: Int, name: String) throws {
        source = name
        width = frameSize
        height = frameSize
        frameRate = try FrameRate(fps)
        self.timeline = timeline
        self.frames = frames
        renderer = SceneRenderer(frameSize: frameSize)
    }

    /// Frames handed out so far.
    public var framesRead: Int { lock.withLock { read } }

    public func nextFrame() throws -> RGBFrames? {
        let k: Int? = lock.withLock {
            guard !closed, read < frames else { return nil }
            read += 1
            return read - 1
        }
        guard let k else { return nil }
        return try RGBFrames(width: width, height: height, pixels: renderer.render(timeline.truth(at: k)))
    }

    public func close() { lock.withLock { closed = true } }
}

/// Where the frames of the input measurements come from.
public protocol InputFrameSource: FrameSource {
    /// Video-to-video: `input` (the plan's input drawn) restyled by the plan's prompt; `body` gets each output
    /// chunk (the output has the input's frames one for one, in order).
    func restyle(_ plan: RestylePlan, input: SceneInput, options: EvalOptions, _ body: (RGBFrames) async throws -> Void) async throws
    /// Image-to-video: the video opened by `image`, continued by the plan's prompt; `body` gets each block's
    /// frames, the still block first.
    func animate(_ plan: AnimatePlan, image: RGBFrames, _ body: (RGBFrames) async throws -> Void) async throws
}

extension ReferenceFrameSource: InputFrameSource {
    /// The intended output drawn: the input's motion in the prompt's colours, read from the input as it goes.
    public func restyle(_ plan: RestylePlan, input: SceneInput, options: EvalOptions, _ body: (RGBFrames) async throws -> Void) async throws {
        var first = 0
        while first < plan.frames {
            let n = first == 0 ? 5 : 4
            guard first + n <= plan.frames else { break }
            for _ in 0..<n { _ = try input.nextFrame() }
            try await body(try renderer.render(plan.targetTimeline, frames: first..<(first + n)))
            first += n
        }
    }

    public func animate(_ plan: AnimatePlan, image: RGBFrames, _ body: (RGBFrames) async throws -> Void) async throws {
        for b in 0..<plan.blocks {
            let first = VideoPlan.firstFrame(ofBlock: b)
            var pixels: [UInt8] = []
            for k in first..<(first + VideoPlan.frames(inBlock: b)) { pixels += renderer.render(plan.truth(at: k)) }
            try await body(try RGBFrames(width: image.width, height: image.height, pixels: pixels))
        }
    }
}
