import Testing
@testable import ReelEval

/// The whole measurement on drawn videos: the ground truth scores full marks, and models that lag,
/// never switch, jump, get a colour or a direction wrong, or lose the object are caught and measured.
@Suite struct EvalRunnerTests {
    static var options: EvalOptions {
        var o = EvalOptions()
        o.prompts = 6
        o.blocksPerPrompt = 3
        o.switches = 8
        o.switchBlock = 2
        o.blocksFromSwitch = 3
        o.longFrames = 190
        o.windowBlocks = 4
        return o
    }

    func run(_ source: DrawnSource = DrawnSource(), _ options: EvalOptions = Self.options) async throws -> EvalReport {
        try await EvalRunner(source: source, options: options).run()
    }

    @Test func theGroundTruthScoresFullMarks() async throws {
        let r = try await run()
        let a = try #require(r.adherence)
        #expect(a.frames == 6 * 33 && r.frames == 6 * 33 + 8 * 57 + 201)
        #expect(Set(a.rates.map(\.attribute)) == Set(Attribute.allCases))
        for rate in a.rates { #expect(rate.rate == 1, "\(rate)") }
        #expect(a.allAttributesBlocks == Tally(correct: 18, judged: 18))
        let s = try #require(r.switches)
        #expect(s.byKind.map(\.kind) == SwitchKind.allCases && s.byKind.allSatisfy { $0.count == 2 })
        for k in s.byKind {
            #expect(k.settled == 2 && k.meanLatencyBlocks == 0 && k.maxLatencyBlocks == 0 && k.neverRate == 0 && k.heldBeforeRate == 1, "\(k)")
        }
        // The object carries on: its jump at the switch is the ground truth's, to the analysis' precision.
        for result in s.results {
            let jump = try #require(result.jump)
            #expect(abs(jump - result.expectedJump) < 0.75, "\(result.kind): \(jump) vs \(result.expectedJump)")
        }
        let c = s.continuity
        #expect(abs(try #require(c.meanJump) - (try #require(c.meanExpectedJump))) < 0.3)
        #expect(try #require(r.seams.maxExcess) < 1 && r.seams.unmeasured == 0)
        let l = try #require(r.longRun)
        #expect(l.frames == 201 && l.blocks == 17 && l.windows.count == 5 && l.windows.last!.frames == 12)
        #expect(l.windows.allSatisfy { w in w.rates.allSatisfy { $0.rate == 1 } })
        #expect(abs(l.drift.sharpnessRatio! - 1) < 0.1 && l.drift.meanColourDistance < 2 && l.drift.rates.values.allSatisfy { $0 == 0 })
        #expect(abs(l.windows[0].sharpness - l.referenceSharpness) < 0.05 * l.referenceSharpness)
    }

    @Test func promptsAreDrawnDeterministicallyAndSwitchOneAttribute() throws {
        let a = try EvalRunner(source: DrawnSource(), options: Self.options)
        let b = try EvalRunner(source: DrawnSource(), options: Self.options)
        var other = Self.options
        other.seed = 1
        let c = try EvalRunner(source: DrawnSource(), options: other)
        #expect(a.adherencePlans().map(\.prompts) == b.adherencePlans().map(\.prompts))
        #expect(a.adherencePlans().map(\.prompts) != c.adherencePlans().map(\.prompts))
        #expect(a.switchPlans().map(\.plan.prompts) == b.switchPlans().map(\.plan.prompts))
        for (plan, kind) in a.switchPlans() {
            let (x, y) = (plan.scenes[0], plan.scenes[1])
            let changed: Set<SwitchKind> = Set([x.object!.colour != y.object!.colour ? .colour : nil,
                                                x.object!.shape != y.object!.shape ? .shape : nil,
                                                x.object!.motion != y.object!.motion || x.object!.speed != y.object!.speed ? .motion : nil,
                                                x.background != y.background ? .background : nil].compactMap { $0 })
            #expect(changed == [kind])
            #expect(plan.timeline.segments[1].start == 21)
        }
        #expect(try a.longPlan().scenes[0].object?.motion.kind == .wrap)
    }

    /// A model that keeps showing the old prompt for `lag` blocks after the switch.
    @Test(arguments: [1, 2])
    func switchLatencyIsTheBlocksTheOldPromptLingers(lag: Int) async throws {
        var options = Self.options
        options.prompts = 0
        options.longFrames = 0
        let late = DrawnSource(timeline: { plan in
            VideoPlan(scenes: plan.scenes, switchBlocks: plan.switchBlocks.map { $0 + lag }, blocks: plan.blocks,
                      seed: plan.seed, frameSize: 128).timeline
        })
        let s = try #require(try await run(late, options).switches)
        for result in s.results {
            #expect(result.latencyBlocks == lag && result.followed == (0..<3).map { $0 >= lag } && result.heldBefore, "\(result)")
        }
        for k in s.byKind { #expect(k.meanLatencyBlocks == Double(lag) && k.maxLatencyBlocks == lag && k.neverRate == 0) }
    }

    @Test func aModelThatNeverSwitchesIsCaught() async throws {
        var options = Self.options
        options.prompts = 0
        options.longFrames = 0
        let stuck = DrawnSource(timeline: { plan in SceneTimeline(plan.scenes[0], frameSize: 128) })
        let s = try #require(try await run(stuck, options).switches)
        #expect(s.results.allSatisfy { $0.latencyBlocks == nil && $0.followed == [false, false, false] })
        #expect(s.byKind.allSatisfy { $0.neverRate == 1 && $0.settled == 0 && $0.meanLatencyBlocks == nil })
    }

    @Test func aJumpAtTheSwitchIsMeasured() async throws {
        var options = Self.options
        options.prompts = 0
        options.longFrames = 0
        // From the switch frame on, the object is drawn 20 px to the right of where it should be.
        let jumpy = DrawnSource(edit: { plan, block, _, truth in
            if block >= plan.switchBlocks[0] { truth.centre.x += 20 }
        })
        let r = try await run(jumpy, options)
        let s = try #require(r.switches)
        for result in s.results {
            let jump = try #require(result.jump)
            // 20 px, give or take the ground truth's own displacement there (the analysis is within 0.75 px).
            #expect(abs(jump - 20) <= result.expectedJump + 0.75, "\(result)")
        }
        #expect(try #require(s.continuity.meanExcess) > 14)
        // Seams without a switch are untouched.
        #expect(try #require(r.seams.maxExcess) < 1)
    }

    @Test func wrongColoursAndDirectionsAreCaughtAttributeByAttribute() async throws {
        var options = Self.options
        options.switches = 0
        options.longFrames = 0
        // Colour: the next palette colour the background does not use. Motion: reversed.
        let wrong = DrawnSource(timeline: { plan in
            var s = plan.scenes[0]
            if let o = s.object, let m = Motion.allCases.first(where: { m in
                m.kind == o.motion.kind && m.direction.x == -o.motion.direction.x && m.direction.y == -o.motion.direction.y }) {
                s.object!.motion = m
            }
            return SceneTimeline(s, frameSize: 128)
        }, edit: { _, _, _, truth in
            let c = truth.scene.object!.colour
            truth.scene.object!.colour = SceneColour.allCases.first { $0 != c && !truth.scene.background.contains($0) }!
        })
        let r = try await run(wrong, options)
        let a = try #require(r.adherence)
        let rates = Dictionary(uniqueKeysWithValues: a.rates.map { ($0.attribute, $0.rate!) })
        #expect(rates[.colour] == 0 && rates[.shape] == 1 && rates[.background] == 1 && rates[.presence] == 1 && rates[.size] == 1)
        let plans = try EvalRunner(source: wrong, options: options).adherencePlans()
        for (plan, result) in zip(plans, a.perPrompt) {
            let motion = result.rates.first { $0.attribute == .motion }!.rate!
            switch plan.scenes[0].object!.motion.kind {
            case .wrap: #expect(motion == 0, "\(result.prompt)")
            case .bounce, .still: #expect(motion == 1, "\(result.prompt)")     // reversed, a bounce keeps its axis
            }
        }
        #expect(plans.contains { $0.scenes[0].object!.motion.kind == .wrap })
    }

    @Test func aLongRunThatLosesItsObjectDrifts() async throws {
        var options = Self.options
        options.prompts = 0
        options.switches = 0
        options.longFrames = 400
        // After frame 200 the object is gone and the background darkens.
        let fading = DrawnSource(edit: { _, _, frame, truth in
            if frame >= 200 { truth.scene = Scene(object: nil, background: .plain(.black)) }
        })
        let l = try #require(try await run(fading, options).longRun)
        // 34 blocks: 8 windows of 4 and one of 2 (frames 393-404); drift compares window 7 with window 0.
        #expect(l.windows.count == 9 && l.windows.last!.blocks == 2)
        #expect(l.windows.first!.rate(.presence) == 1 && l.windows[7].rate(.presence) == 0)
        #expect(l.drift.rates["presence"] == -1 && l.drift.rates["background"] == -1)
        #expect(l.drift.sharpness < 0 && l.drift.sharpnessRatio! < 0.1 && l.drift.meanColourDistance > 100)
    }

    @Test func theTableNamesEveryPartAndTheJSONHasTheFigures() async throws {
        let r = try await run()
        let table = r.table
        for part in ["Prompt adherence", "Switch responsiveness", "Continuity", "Long run", "drift", "FPS"] {
            #expect(table.contains(part), "\(part)")
        }
        let json = String(decoding: try r.json(), as: UTF8.self)
        for key in ["\"adherence\"", "\"latency_blocks\"", "\"never_rate\"", "\"mean_excess\"", "\"windows\"", "\"sharpness_ratio\"", "\"per_prompt\""] {
            #expect(json.contains(key), "\(key)")
        }
    }

    @Test func badOptionsAreRefusedWithTheirFlag() {
        var o = Self.options
        o.switchBlock = 0
        #expect(throws: EvalError.self) { try o.validate() }
        o = Self.options
        o.longPrompt = "a red circle"
        do { try o.validate(); Issue.record("accepted") } catch { #expect(error.message.contains("--long-prompt")) }
        o = Self.options
        o.frameSize = 100
        #expect(throws: EvalError.self) { try o.validate() }
        o.frameSize = 128
        o.prompts = 0; o.switches = 0; o.longFrames = 0
        do { try o.validate(); Issue.record("accepted") } catch { #expect(error.message.contains("nothing to measure")) }
    }
}
