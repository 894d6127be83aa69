import Foundation
import ReelMedia
@testable import ReelEval

/// The data set's own output (tools/fixtures/eval/make_scene_fixture.py runs training/data).
struct SceneFixture: Decodable {
    struct Timeline: Decodable {
        struct Segment: Decodable { var start: Int; var caption: String }
        var frameSize: Int
        var start: [Double]?
        var segments: [Segment]
        var frames: [Int]
        var centre: [[Double]]
        var velocity: [[Double]]
    }
    struct Frame: Decodable {
        var shape: String
        var colour: String
        var background: [String]
        var centre: [Double]
        var radius: Double
        var frameSize: Int
        var rgb: String
    }
    var captions: [String]
    var timelines: [Timeline]
    var frames: [Frame]

    static let shared: SceneFixture = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/scenes.json")
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try! decoder.decode(SceneFixture.self, from: Data(contentsOf: url))
    }()
}

func scene(_ caption: String) -> Scene { try! Scene(caption: caption) }

/// Frames drawn from a timeline (the plan's, or another made from it), with an optional change applied
/// to each frame's truth: a model that lags, jumps or gets something wrong.
struct DrawnSource: FrameSource {
    var frameSize = 128
    /// The timeline drawn for a plan.
    var timeline: @Sendable (VideoPlan) -> SceneTimeline = { $0.timeline }
    /// Rewrites the truth of a frame (plan, block, frame index) before drawing it.
    var edit: @Sendable (VideoPlan, Int, Int, inout FrameTruth) -> Void = { _, _, _, _ in }
    var summary: String { "drawn test frames" }

    func generate(_ plan: VideoPlan, _ body: (RGBFrames) async throws -> Void) async throws {
        let renderer = SceneRenderer(frameSize: frameSize)
        let drawn = timeline(plan)
        for b in 0..<plan.blocks {
            let first = VideoPlan.firstFrame(ofBlock: b)
            var pixels: [UInt8] = []
            for f in first..<(first + VideoPlan.frames(inBlock: b)) {
                var truth = drawn.truth(at: f)
                edit(plan, b, f, &truth)
                pixels += renderer.render(truth)
            }
            try await body(try RGBFrames(width: frameSize, height: frameSize, pixels: pixels))
        }
    }
}

extension FrameAnalyzer {
    func analyze(_ truth: FrameTruth) -> FrameObservation {
        analyze(SceneRenderer(frameSize: frameSize).render(truth)[...])
    }
}

func truth(_ s: Scene, at centre: Point, frameSize: Int = 128) -> FrameTruth {
    let r = s.object.map { SceneGeometry(frameSize: frameSize).radius($0.size) } ?? 0
    return FrameTruth(scene: s, centre: centre, velocity: Point(0, 0), radius: r, segment: 0)
}
