import Foundation
import ReelCore
import ReelIO

/// Runs `reel eval`: draws prompts from the grammar, has `source` make their videos, measures every
/// block as it arrives and keeps only per-block sums (the long run's memory stays flat), and assembles
/// the report.
public final class EvalRunner {
    public let source: any FrameSource
    public let options: EvalOptions
    let analyzer: FrameAnalyzer
    let judge: SceneJudge
    let log: (String) -> Void
    var frames = 0
    var analysisSeconds = 0.0
    private var seams = JumpAccumulator()
    private let clock = ContinuousClock()

    /// `log` receives progress lines (videos done, blocks, frames per second).
    public init(source: any FrameSource, options: EvalOptions, log: @escaping (String) -> Void = { _ in }) throws(EvalError) {
        try options.validate()
        self.source = source
        self.options = options
        analyzer = FrameAnalyzer(frameSize: options.frameSize)
        judge = SceneJudge(frameSize: options.frameSize)
        self.log = log
    }

    public func run() async throws -> EvalReport {
        let started = clock.now
        let adherence = options.prompts > 0 ? try await runAdherence() : nil
        let switches = options.switches > 0 ? try await runSwitches() : nil
        let longRun = options.longFrames > 0 ? try await runLong() : nil
        let restyle = options.restyleVideos > 0 ? try await runRestyle() : nil
        let animate = options.animateVideos > 0 ? try await runAnimate() : nil
        let seconds = (clock.now - started).seconds
        return EvalReport(source: source.summary, frameSize: options.frameSize, seed: options.seed, adherence: adherence,
                          switches: switches, longRun: longRun, restyle: restyle, animate: animate, seams: seams.statistics,
                          frames: frames, seconds: seconds,
                          framesPerSecond: Double(frames) / max(seconds, 1e-9),
                          analysisMillisecondsPerFrame: frames > 0 ? analysisSeconds * 1000 / Double(frames) : 0)
    }

    // MARK: - Plans

    /// The prompt-adherence videos: one drawn prompt each.
    public func adherencePlans() -> [VideoPlan] {
        var sampler = PromptSampler(seed: options.seed)
        return (0..<options.prompts).map { i in
            VideoPlan(scenes: [sampler.scene()], blocks: options.blocksPerPrompt, seed: options.seed &+ UInt64(i),
                      frameSize: options.frameSize)
        }
    }

    /// The switch videos: the kinds in turn (colour, shape, motion, background), each a drawn prompt and
    /// the same prompt with that one attribute changed, valid where the object is at the switch.
    public func switchPlans() -> [(plan: VideoPlan, kind: SwitchKind)] {
        var sampler = PromptSampler(seed: options.seed ^ 0x5357_4954_4348)    // a stream of its own
        let geometry = SceneGeometry(frameSize: options.frameSize)
        let blocks = options.switchBlock + options.blocksFromSwitch
        let at = VideoPlan.firstFrame(ofBlock: options.switchBlock)
        return (0..<options.switches).map { i in
            let kind = SwitchKind.allCases[i % SwitchKind.allCases.count]
            while true {
                let first = sampler.scene()
                let centre = SceneTimeline(first, frameSize: options.frameSize).truth(at: at).centre
                if let next = sampler.switched(first, kind: kind, centre: centre, geometry: geometry) {
                    let plan = VideoPlan(scenes: [first, next], switchBlocks: [options.switchBlock], blocks: blocks,
                                         seed: options.seed &+ 10_000 &+ UInt64(i), frameSize: options.frameSize)
                    return (plan, kind)
                }
            }
        }
    }

    /// The long run: `--long-prompt`, or a drawn prompt that moves and wraps around the edges.
    public func longPlan() throws -> VideoPlan {
        let scene: Scene
        if let text = options.longPrompt {
            scene = try Scene(caption: text)
        } else {
            var sampler = PromptSampler(seed: options.seed ^ 0x4C4F_4E47)
            var s = sampler.scene()
            while s.object?.motion.kind != .wrap { s = sampler.scene() }
            scene = s
        }
        return VideoPlan(scenes: [scene], prompts: [options.longPrompt ?? scene.caption], blocks: options.longBlocks,
                         seed: options.seed &+ 20_000, frameSize: options.frameSize)
    }

    // MARK: - Measuring

    /// Streams one video and measures each block as it arrives; `each` sees every block in order.
    func measure(_ plan: VideoPlan, each: (BlockMeasurement) throws -> Void) async throws {
        var block = 0
        var previous: BlockMeasurement?
        try await source.generate(plan) { rgb in
            let expected = VideoPlan.frames(inBlock: block)
            guard rgb.count == expected, rgb.width == options.frameSize, rgb.height == options.frameSize else {
                throw EvalError("block \(block) has \(rgb.count) frames of \(rgb.width)x\(rgb.height); reel eval expects \(expected) "
                                + "of \(options.frameSize)x\(options.frameSize) (a decoder of temporal stride 4)")
            }
            let t0 = clock.now
            let m = BlockMeasurement.measure(rgb, block: block, firstFrame: VideoPlan.firstFrame(ofBlock: block),
                                             timeline: plan.timeline, analyzer: analyzer, judge: judge)
            analysisSeconds += (clock.now - t0).seconds
            frames += rgb.count
            if let previous, previous.segment == m.segment {
                seams.add(before: previous, after: m, frameSize: options.frameSize)
            }
            previous = m
            block += 1
            try each(m)
        }
        guard block == plan.blocks else { throw EvalError("the video ended after \(block) of \(plan.blocks) blocks") }
    }

    func runAdherence() async throws -> AdherenceReport {
        var total = Tallies(), all = Tally(), perPrompt: [PromptAdherence] = []
        let plans = adherencePlans()
        for (i, plan) in plans.enumerated() {
            let t0 = clock.now
            var tallies = Tallies()
            try await measure(plan) { m in
                tallies.merge(m.tallies)
                all.add(m.followsAll)
            }
            total.merge(tallies)
            perPrompt.append(PromptAdherence(prompt: plan.prompts[0], seed: plan.seed, rates: tallies.rates))
            log(String(format: "adherence %d/%d: %d frames, %.1f FPS: %@", i + 1, plans.count, plan.frames,
                       Double(plan.frames) / max((clock.now - t0).seconds, 1e-9), plan.prompts[0]))
        }
        return AdherenceReport(prompts: plans.count, blocksPerVideo: options.blocksPerPrompt,
                               frames: plans.count * VideoPlan.firstFrame(ofBlock: options.blocksPerPrompt),
                               rates: total.rates, allAttributesBlocks: all, perPrompt: perPrompt)
    }

    func runSwitches() async throws -> SwitchReport {
        var results: [SwitchResult] = []
        var continuity = JumpAccumulator()
        let plans = switchPlans()
        let s = options.switchBlock
        for (i, (plan, kind)) in plans.enumerated() {
            let t0 = clock.now
            var blocks: [BlockMeasurement] = []
            try await measure(plan) { blocks.append($0) }
            let attribute = Attribute(kind)
            let followed = blocks[s...].map { $0.follows(attribute) ?? false }
            let latency = followed.indices.first { followed[$0...].allSatisfy { $0 } }
            let at = VideoPlan.firstFrame(ofBlock: s)
            let expected = plan.timeline.truth(at: at).centroid
                .wrappedOffset(from: plan.timeline.truth(at: at - 1).centroid, size: Double(options.frameSize)).length
            let jump = continuity.add(before: blocks[s - 1], after: blocks[s], frameSize: options.frameSize, expected: expected)
            results.append(SwitchResult(kind: kind, from: plan.prompts[0], to: plan.prompts[1], seed: plan.seed,
                                        switchFrame: at, followed: followed, latencyBlocks: latency,
                                        heldBefore: blocks[s - 1].follows(attribute) ?? false,
                                        jump: jump?.jump, typicalStep: jump?.typical, expectedJump: expected))
            log(String(format: "switch %d/%d (%@): %d frames, %.1f FPS: %@", i + 1, plans.count, kind.rawValue,
                       plan.frames, Double(plan.frames) / max((clock.now - t0).seconds, 1e-9),
                       latency.map { "follows after \($0) blocks" } ?? "never follows"))
        }
        let byKind = SwitchKind.allCases.compactMap { kind -> SwitchKindSummary? in
            let r = results.filter { $0.kind == kind }
            guard !r.isEmpty else { return nil }
            let latencies = r.compactMap(\.latencyBlocks)
            let n = Double(r.count)
            return SwitchKindSummary(kind: kind, count: r.count, settled: latencies.count,
                                     meanLatencyBlocks: latencies.isEmpty ? nil : Double(latencies.reduce(0, +)) / Double(latencies.count),
                                     maxLatencyBlocks: latencies.max(), neverRate: Double(r.count - latencies.count) / n,
                                     heldBeforeRate: Double(r.filter(\.heldBefore).count) / n)
        }
        return SwitchReport(videos: plans.count, switchBlock: s, blocksFromSwitch: options.blocksFromSwitch, byKind: byKind,
                            continuity: continuity.statistics, results: results)
    }

    func runLong() async throws -> LongRunReport {
        let plan = try longPlan()
        let renderer = SceneRenderer(frameSize: options.frameSize)
        let reference = analyzer.analyze(renderer.render(plan.timeline.truth(at: 0))[...]).sharpness
        var windows: [WindowStatistics] = []
        var current: (first: Int, frames: Int, blocks: Int, sharpness: Double, colour: [Double], tallies: Tallies)?
        let t0 = clock.now
        let every = max(1, min(50, plan.blocks / 20))
        func close() {
            guard let w = current else { return }
            let n = Double(w.frames)
            windows.append(WindowStatistics(index: windows.count, firstFrame: w.first, frames: w.frames, blocks: w.blocks, sharpness: w.sharpness / n,
                                            meanColour: w.colour.map { $0 / n }, rates: w.tallies.rates,
                                            residentMegabytes: residentBytes().map { Double($0) / 1e6 }))
            current = nil
        }
        try await measure(plan) { m in
            if current == nil { current = (m.firstFrame, 0, 0, 0, [0, 0, 0], Tallies()) }
            current!.frames += m.frames
            current!.blocks += 1
            current!.sharpness += m.sharpnessSum
            for c in 0..<3 { current!.colour[c] += m.colourSum[c] }
            current!.tallies.merge(m.tallies)
            if current!.blocks == options.windowBlocks { close() }
            if (m.index + 1) % every == 0 || m.index + 1 == plan.blocks {
                let done = m.firstFrame + m.frames
                var line = String(format: "long run: block %d/%d, %d/%d frames, %.1f FPS", m.index + 1, plan.blocks, done,
                                  plan.frames, Double(done) / max((clock.now - t0).seconds, 1e-9))
                if let rss = residentBytes() { line += String(format: ", resident %.0f MB", Double(rss) / 1e6) }
                log(line)
            }
        }
        close()
        let seconds = (clock.now - t0).seconds
        // A short last window (the run's remainder) is noisier: drift uses the last full one when there is one.
        let first = windows[0]
        let last = windows.count > 1 && windows[windows.count - 1].blocks < options.windowBlocks ? windows[windows.count - 2] : windows[windows.count - 1]
        var rates: [String: Double] = [:]
        for a in Attribute.allCases {
            if let x = last.rate(a), let y = first.rate(a) { rates[a.rawValue] = x - y }
        }
        let colourDistance = zip(first.meanColour, last.meanColour).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot()
        let drift = Drift(sharpness: last.sharpness - first.sharpness,
                          sharpnessRatio: first.sharpness > 0 ? last.sharpness / first.sharpness : nil,
                          meanColourDistance: colourDistance, rates: rates,
                          residentMegabytes: last.residentMegabytes.flatMap { l in first.residentMegabytes.map { l - $0 } })
        return LongRunReport(prompt: plan.prompts[0], frames: plan.frames, blocks: plan.blocks, windowBlocks: options.windowBlocks,
                             referenceSharpness: reference, windows: windows, drift: drift,
                             framesPerSecond: Double(plan.frames) / max(seconds, 1e-9))
    }
}
