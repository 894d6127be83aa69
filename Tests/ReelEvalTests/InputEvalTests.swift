import Testing
import ReelMedia
@testable import ReelEval

/// `reel eval --restyle / --animate` on drawn videos: the intended output scores full marks, and sources that
/// ignore the input, keep its colours, lag behind it or start the object elsewhere are caught.
@Suite struct InputEvalTests {
    static var options: EvalOptions {
        var o = EvalOptions()
        o.prompts = 0
        o.switches = 0
        o.longFrames = 0
        o.restyleVideos = 6
        o.restyleFrames = 33
        o.animateVideos = 4
        o.animateBlocks = 3
        return o
    }

    /// The reference with one deliberate fault.
    struct FaultySource: InputFrameSource {
        enum Fault { case none, ignoresInput, keepsInputColours, lags(Int), startsAtCentre }
        let fault: Fault
        let reference = ReferenceFrameSource(frameSize: 128)
        var summary: String { "drawn, \(fault)" }

        func generate(_ plan: VideoPlan, _ body: (RGBFrames) async throws -> Void) async throws {
            try await reference.generate(plan, body)
        }

        func restyle(_ plan: RestylePlan, input: SceneInput, options: EvalOptions, _ body: (RGBFrames) async throws -> Void) async throws {
            let centre = Point(64, 64)
            var timeline = plan.targetTimeline
            switch fault {
            case .ignoresInput: timeline = SceneTimeline([.init(start: 0, scene: plan.prompt)], frameSize: 128, start: centre)
            case .keepsInputColours: timeline = plan.inputTimeline
            default: break
            }
            var first = 0
            while first + (first == 0 ? 5 : 4) <= plan.frames {
                let n = first == 0 ? 5 : 4
                for _ in 0..<n { _ = try input.nextFrame() }
                var pixels: [UInt8] = []
                for k in first..<(first + n) {
                    var lag = 0
                    if case .lags(let d) = fault { lag = d }
                    pixels += reference.renderer.render(timeline.truth(at: max(0, k - lag)))
                }
                try await body(try RGBFrames(width: 128, height: 128, pixels: pixels))
                first += n
            }
        }

        func animate(_ plan: AnimatePlan, image: RGBFrames, _ body: (RGBFrames) async throws -> Void) async throws {
            guard case .startsAtCentre = fault else { return try await reference.animate(plan, image: image, body) }
            let moved = AnimatePlan(scene: plan.scene, start: Point(64, 64), blocks: plan.blocks, seed: plan.seed, frameSize: 128)
            try await reference.animate(moved, image: image, body)
        }
    }

    func run(_ fault: FaultySource.Fault) async throws -> EvalReport {
        try await EvalRunner(source: FaultySource(fault: fault), options: Self.options).run()
    }

    @Test func plansChangeWhatTheySayAndStartOffCentre() throws {
        let runner = try EvalRunner(source: FaultySource(fault: .none), options: Self.options)
        let plans = runner.restylePlans()
        #expect(plans.map(\.change) == [.colour, .background, .both, .colour, .background, .both])
        for p in plans {
            let a = try #require(p.input.object), b = try #require(p.prompt.object)
            #expect((a.colour != b.colour) == (p.change != .background), "\(p.input.caption) -> \(p.prompt.caption)")
            #expect((p.input.background != p.prompt.background) == (p.change != .colour), "\(p.input.caption) -> \(p.prompt.caption)")
            #expect(a.shape == b.shape && a.size == b.size && a.motion == b.motion && a.speed == b.speed)
            #expect(!p.prompt.background.contains(b.colour))
            #expect(p.start.wrappedOffset(from: Point(64, 64), size: 128).length >= 32)
        }
        for p in runner.animatePlans() {
            #expect(p.scene.object?.motion != .staysStill && p.start.wrappedOffset(from: Point(64, 64), size: 128).length >= 32)
            #expect(p.truth(at: 0).centre == p.start && p.truth(at: 8).centre == p.start && p.truth(at: 9).centre != p.start)
        }
    }

    @Test func theIntendedOutputScoresFullMarks() async throws {
        let r = try await run(.none)
        let v = try #require(r.restyle)
        #expect(v.videos == 6 && v.results.allSatisfy { $0.frames == 33 })
        for rate in v.rates { #expect(rate.rate == 1, "\(rate)") }
        #expect(v.inputColourKept.correct == 0 && v.inputColourKept.judged == 4 * 33)
        #expect((v.centreError.p90 ?? 99) < 0.5 && v.centreError.count == 6 * 33)
        #expect((v.velocityError.p90 ?? 99) < 0.2)
        #expect(v.latencyFramesMin == 0 && v.latencyFramesMax == 0)
        let a = try #require(r.animate)
        #expect((a.startError.p90 ?? 99) < 0.5 && (a.centreError.p90 ?? 99) < 0.5 && a.centreError.count == 4 * 24)
        for rate in a.rates { #expect(rate.rate == 1, "\(rate)") }
    }

    @Test func faultsAreCaught() async throws {
        let ignores = try #require(try await run(.ignoresInput).restyle)
        #expect((ignores.centreError.median ?? 0) > 15, "\(ignores.centreError)")
        let keeps = try #require(try await run(.keepsInputColours).restyle)
        #expect(keeps.inputColourKept.rate == 1)
        #expect((keeps.rates.first { $0.attribute == .colour }?.rate ?? 1) < 0.5)
        #expect((keeps.rates.first { $0.attribute == .background }?.rate ?? 1) < 0.8)
        let lags = try #require(try await run(.lags(4)).restyle)
        #expect((lags.centreError.median ?? 0) > 2.5, "\(lags.centreError)")
        let centre = try #require(try await run(.startsAtCentre).animate)
        #expect((centre.startError.median ?? 0) > 25, "\(centre.startError)")
    }
}
