import Testing
@testable import ReelEval

/// Motion read from the object's centre over a block of drawn frames: every motion and speed, across
/// the frame's edges and through a bounce's reflection; and motion that is not the prompt's.
@Suite struct MotionTests {
    let analyzer = FrameAnalyzer(frameSize: 128)
    let judge = SceneJudge(frameSize: 128)

    /// Centres over `frames` of a one-prompt timeline that starts at `start`.
    func centroids(_ s: Scene, start: Point, frames: Range<Int>) -> [Point?] {
        let timeline = SceneTimeline([SceneTimeline.Segment(start: 0, scene: s)], frameSize: 128, start: start)
        return frames.map { f in
            let o = analyzer.analyze(timeline.truth(at: f))
            return judge.judge(o, against: s)[.presence] == true ? o.centroid : nil
        }
    }

    func verdict(_ s: Scene, start: Point, judgedAs prompt: Scene? = nil) -> [Attribute: Bool] {
        let m = MotionObservation.measure(centroids(s, start: start, frames: 9..<21), frameSize: 128)
        return judge.judge(m, against: prompt ?? s)
    }

    @Test(arguments: Motion.allCases)
    func recognisesEveryMotionAndSpeed(motion: Motion) {
        // Moves: near a corner, so they cross two edges within the block. Bounces: inside their range (as
        // the sampler keeps them), near the walls, so they reflect within the block.
        let starts = motion.kind == .bounce ? [Point(14, 112), Point(110, 20)] : [Point(3, 125), Point(100, 108)]
        for start in starts {
            for speed in Speed.allCases where motion != .staysStill || speed == .normal {
                for shape in [Shape.triangle, .cross] {
                    let s = Scene(object: SceneObject(shape: shape, colour: .orange, size: .small, motion: motion, speed: speed),
                                  background: Background(top: .blue, bottom: .white))
                    let v = verdict(s, start: start)
                    #expect(v[.motion] == true && v[.speed] != false, "\(s.caption) from \(start): \(v)")
                    #expect((v[.speed] != nil) == (motion != .staysStill))
                }
            }
        }
    }

    @Test func aReflectionInsideTheBlockStillReadsAsTheBouncesAxis() {
        // Frame 9 to 20 of a quick bounce that starts 8 px from the right wall: it reflects inside the block.
        let s = scene("a small red circle bounces left and right quickly on a blue background")
        let timeline = SceneTimeline([SceneTimeline.Segment(start: 0, scene: s)], frameSize: 128, start: Point(128 - 10.24 - 30, 40))
        #expect(timeline.truth(at: 9).velocity.x > 0 && timeline.truth(at: 20).velocity.x < 0)
        #expect(verdict(s, start: Point(128 - 10.24 - 30, 40))[.motion] == true)
        #expect(verdict(s, start: Point(128 - 10.24 - 30, 40), judgedAs: scene("a small red circle moves right quickly on a blue background"))[.motion] == false)
    }

    @Test func catchesMotionThatIsNotThePrompts() {
        let left = scene("a red square moves left on a blue background")
        func judged(_ prompt: String) -> [Attribute: Bool] { verdict(left, start: Point(64, 64), judgedAs: scene(prompt)) }
        #expect(judged("a red square moves left on a blue background") == [.motion: true, .speed: true])
        #expect(judged("a red square moves right on a blue background")[.motion] == false)
        #expect(judged("a red square moves up and left on a blue background")[.motion] == false)
        #expect(judged("a red square stays still on a blue background")[.motion] == false)
        #expect(judged("a red square bounces up and down on a blue background")[.motion] == false)
        #expect(judged("a red square bounces left and right on a blue background")[.motion] == true)
        #expect(judged("a red square moves left quickly on a blue background") == [.motion: true, .speed: false])
        #expect(judged("a red square moves left slowly on a blue background") == [.motion: true, .speed: false])
        // A still object is not moving.
        let still = scene("a red square stays still on a blue background")
        #expect(verdict(still, start: Point(64, 64), judgedAs: left) == [.motion: false, .speed: false])
    }

    @Test func noMotionIsReadWithoutAnObjectOrFromARegionThatJumpsAbout() {
        let s = scene("a red square moves left on a blue background")
        // The object shows in 3 of 12 frames: too few pairs to read a motion.
        let sparse = centroids(s, start: Point(64, 64), frames: 9..<21).enumerated().map { $0.offset % 4 == 0 ? $0.element : nil }
        #expect(judge.judge(MotionObservation.measure(sparse, frameSize: 128), against: s) == [.motion: false, .speed: false])
        // A region that lands somewhere else every frame (noise) moves on average, but does not move.
        var rng = SplitMix64(seed: 5)
        let flicker: [Point?] = (0..<12).map { i in Point(64 - 1.5 * Double(i) + Double(rng.next() % 40), Double(rng.next() % 128)) }
        #expect(judge.judge(MotionObservation.measure(flicker, frameSize: 128), against: s)[.motion] == false)
    }

    @Test func theTrianglesCentroidSitsBelowItsCentre() throws {
        let s = scene("a large green triangle stays still on a black background")
        let t = truth(s, at: Point(64, 64))
        let c = try #require(analyzer.analyze(t).centroid)
        #expect(abs(c.y - (64 + 0.2 * 24.32)) < 0.5 && abs(c.x - 64) < 0.5)
    }
}
