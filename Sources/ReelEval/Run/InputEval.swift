import Foundation
import ReelMedia

/// Median, 90th percentile, mean and count of a set of errors (pixels, or pixels per frame).
public struct ErrorStatistics: Sendable, Codable, Equatable {
    public var count: Int
    public var median: Double?
    public var p90: Double?
    public var mean: Double?

    public init(_ values: [Double]) {
        let v = values.filter(\.isFinite).sorted()
        count = v.count
        guard !v.isEmpty else { return }
        func quantile(_ q: Double) -> Double {
            let x = q * Double(v.count - 1), i = Int(x), f = x - Double(i)
            return i + 1 < v.count ? v[i] * (1 - f) + v[i + 1] * f : v[i]
        }
        median = quantile(0.5)
        p90 = quantile(0.9)
        mean = v.reduce(0, +) / Double(v.count)
    }
}

/// Video-to-video, measured (`reel eval --restyle N`).
public struct RestyleReport: Sendable, Codable {
    public var videos: Int
    public var framesPerVideo: Int
    public var noiseScale: Double
    public var steps: Int
    /// Per-frame attributes judged against the prompt (colour, background, presence, shape, size; motion and
    /// speed per block), over every output frame.
    public var rates: [AttributeRate]
    /// Frames of colour-changing videos whose object shows the input's colour instead of the prompt's.
    public var inputColourKept: Tally
    /// Output object centre against the input's object centre in the same frame (pixels; frames where an
    /// object region was found).
    public var centreError: ErrorStatistics
    /// Per block: the output object's mean velocity against the input's over the same frames (pixels/frame).
    public var velocityError: ErrorStatistics
    /// Input frames read beyond an output block's last frame when the block came out, before the input ended:
    /// the smallest and largest over the run's blocks (the smallest bounds the pipeline's own delay; more is
    /// read-ahead of a file input, which a live input cannot give).
    public var latencyFramesMin: Int?
    public var latencyFramesMax: Int?
    public var results: [RestyleResult]
}

public struct RestyleResult: Sendable, Codable {
    public var input: String
    public var prompt: String
    public var change: RestylePlan.Change
    public var seed: UInt64
    public var start: Point
    public var frames: Int
    public var colourRate: Double?
    public var backgroundRate: Double?
    public var centreErrorMedian: Double?
}

/// Image-to-video, measured (`reel eval --animate N`).
public struct AnimateReport: Sendable, Codable {
    public var videos: Int
    public var blocksPerVideo: Int
    /// The object's centre in the first generated block against where the image has it, moved as prompted.
    public var startError: ErrorStatistics
    /// Over every generated frame.
    public var centreError: ErrorStatistics
    /// Of the generated blocks, judged against the prompt.
    public var rates: [AttributeRate]
    public var results: [AnimateResult]
}

public struct AnimateResult: Sendable, Codable {
    public var prompt: String
    public var seed: UInt64
    public var start: Point
    public var startErrorMedian: Double?
    public var centreErrorMedian: Double?
    public var motionRate: Double?
}

extension EvalRunner {
    func inputSource() throws -> any InputFrameSource {
        guard let s = source as? any InputFrameSource else {
            throw EvalError("\(source.summary) cannot take input videos or images (--restyle, --animate)")
        }
        return s
    }

    func runRestyle() async throws -> RestyleReport {
        let source = try inputSource()
        var tallies = Tallies(), kept = Tally(), centre: [Double] = [], velocity: [Double] = []
        var latency: [Int] = []
        var results: [RestyleResult] = []
        let size = Double(options.frameSize)
        let plans = restylePlans()
        for (i, plan) in plans.enumerated() {
            let input = try SceneInput(timeline: plan.inputTimeline, frames: plan.frames, frameSize: options.frameSize,
                                       fps: options.fps, name: "drawn input \(i)")
            var video = Tallies(), videoCentre: [Double] = [], done = 0
            let t0 = ContinuousClock.now
            try await source.restyle(plan, input: input, options: options) { rgb in
                guard rgb.width == options.frameSize, rgb.height == options.frameSize else {
                    throw EvalError("the output is \(rgb.width)x\(rgb.height); the input is \(options.frameSize)x\(options.frameSize)")
                }
                let a0 = ContinuousClock.now
                let read = input.framesRead
                if read < plan.frames { latency.append(read - (done + rgb.count)) }     // not the end-of-input flush
                var centroids: [Point?] = [], truths: [Point] = []
                for j in 0..<rgb.count {
                    let k = done + j
                    let o = analyzer.analyze(rgb.frame(j))
                    var verdict = judge.judge(o, against: plan.prompt)
                    verdict[.shape] = nil     // shapes are the input's; judged by text-to-video
                    video.add(verdict)
                    if plan.change != .background, let inputColour = plan.input.object?.colour {
                        kept.add(o.objectColour == inputColour)
                    }
                    let truth = plan.inputTimeline.truth(at: k).centroid
                    if let c = o.centroid, verdict[.presence] == true {
                        let e = c.wrappedOffset(from: truth, size: size).length
                        centre.append(e)
                        videoCentre.append(e)
                    }
                    centroids.append(verdict[.presence] == true ? o.centroid : nil)
                    truths.append(truth)
                }
                if let seen = MotionObservation.measure(centroids, frameSize: options.frameSize, minimumPairs: 2),
                   let want = MotionObservation.measure(truths.map { Optional($0) }, frameSize: options.frameSize, minimumPairs: 2) {
                    velocity.append((seen.meanVelocity - want.meanVelocity).length)
                }
                analysisSeconds += (ContinuousClock.now - a0).seconds
                frames += rgb.count
                done += rgb.count
            }
            guard done > 0 else { throw EvalError("video-to-video \(i) gave no frames") }
            tallies.merge(video)
            let rate = { (a: Attribute) in video[a].rate }
            results.append(RestyleResult(input: plan.input.caption, prompt: plan.prompt.caption, change: plan.change, seed: plan.seed,
                                         start: plan.start, frames: done, colourRate: rate(.colour), backgroundRate: rate(.background),
                                         centreErrorMedian: ErrorStatistics(videoCentre).median))
            log(String(format: "restyle %d/%d (%@): %d frames, %.1f FPS, colour %@, background %@, centre error %@ px: %@ -> %@",
                       i + 1, plans.count, plan.change.rawValue, done, Double(done) / max((ContinuousClock.now - t0).seconds, 1e-9),
                       EvalReport.percent(rate(.colour)), EvalReport.percent(rate(.background)),
                       EvalReport.number(ErrorStatistics(videoCentre).median, "%.1f"), plan.input.caption, plan.prompt.caption))
        }
        return RestyleReport(videos: plans.count, framesPerVideo: options.restyleFrames, noiseScale: options.noiseScale,
                             steps: options.restyleSteps, rates: tallies.rates, inputColourKept: kept,
                             centreError: ErrorStatistics(centre), velocityError: ErrorStatistics(velocity),
                             latencyFramesMin: latency.min(), latencyFramesMax: latency.max(), results: results)
    }

    func runAnimate() async throws -> AnimateReport {
        let source = try inputSource()
        let renderer = SceneRenderer(frameSize: options.frameSize)
        var tallies = Tallies(), startErrors: [Double] = [], centre: [Double] = []
        var results: [AnimateResult] = []
        let size = Double(options.frameSize)
        let plans = animatePlans()
        for (i, plan) in plans.enumerated() {
            let image = try RGBFrames(width: options.frameSize, height: options.frameSize, pixels: renderer.render(plan.truth(at: 0)))
            var video = Tallies(), videoStart: [Double] = [], videoCentre: [Double] = [], block = 0
            let t0 = ContinuousClock.now
            try await source.animate(plan, image: image) { rgb in
                let first = VideoPlan.firstFrame(ofBlock: block)
                guard rgb.count == VideoPlan.frames(inBlock: block), rgb.width == options.frameSize, rgb.height == options.frameSize else {
                    throw EvalError("block \(block) has \(rgb.count) frames of \(rgb.width)x\(rgb.height); expected "
                                    + "\(VideoPlan.frames(inBlock: block)) of \(options.frameSize)x\(options.frameSize)")
                }
                defer { block += 1; frames += rgb.count }
                guard block > 0 else { return }      // the still block is the image itself
                let a0 = ContinuousClock.now
                var centroids: [Point?] = []
                for j in 0..<rgb.count {
                    let o = analyzer.analyze(rgb.frame(j))
                    let verdict = judge.judge(o, against: plan.scene)
                    video.add(verdict)
                    if let c = o.centroid, verdict[.presence] == true {
                        let e = c.wrappedOffset(from: plan.truth(at: first + j).centroid, size: size).length
                        videoCentre.append(e)
                        if block == 1 { videoStart.append(e) }
                    }
                    centroids.append(verdict[.presence] == true ? o.centroid : nil)
                }
                video.add(judge.judge(MotionObservation.measure(centroids, frameSize: options.frameSize), against: plan.scene))
                analysisSeconds += (ContinuousClock.now - a0).seconds
            }
            guard block == plan.blocks else { throw EvalError("image-to-video \(i) ended after \(block) of \(plan.blocks) blocks") }
            tallies.merge(video)
            startErrors += videoStart
            centre += videoCentre
            results.append(AnimateResult(prompt: plan.scene.caption, seed: plan.seed, start: plan.start,
                                         startErrorMedian: ErrorStatistics(videoStart).median,
                                         centreErrorMedian: ErrorStatistics(videoCentre).median, motionRate: video[.motion].rate))
            log(String(format: "animate %d/%d: %d frames, %.1f FPS, start error %@ px, centre error %@ px, motion %@: %@",
                       i + 1, plans.count, plan.frames, Double(plan.frames) / max((ContinuousClock.now - t0).seconds, 1e-9),
                       EvalReport.number(ErrorStatistics(videoStart).median, "%.1f"),
                       EvalReport.number(ErrorStatistics(videoCentre).median, "%.1f"), EvalReport.percent(video[.motion].rate),
                       plan.scene.caption))
        }
        return AnimateReport(videos: plans.count, blocksPerVideo: options.animateBlocks, startError: ErrorStatistics(startErrors),
                             centreError: ErrorStatistics(centre), rates: tallies.rates, results: results)
    }
}
