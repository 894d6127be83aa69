import ReelMedia

/// What one block of a video showed, judged against the prompt of its frames. Only sums and the edge
/// frames' centres are kept, so a video of any length is measured in constant memory.
public struct BlockMeasurement: Sendable {
    public var index: Int
    public var firstFrame: Int
    public var frames: Int
    /// The prompt (timeline segment) of the block's frames.
    public var segment: Int
    /// Per-frame attributes, counted over the block's frames.
    public var frameTallies = Tallies()
    /// Motion and speed, judged once for the block.
    public var blockVerdicts: [Attribute: Bool] = [:]
    public var motion: MotionObservation?
    /// Centres of the object in the block's first and last frames (nil where it is not present).
    public var firstCentroid: Point?
    public var lastCentroid: Point?
    public var sharpnessSum = 0.0
    public var colourSum = [0.0, 0.0, 0.0]

    /// Whether the block follows the prompt on `a` (per-frame attributes: in most of its frames); nil
    /// when the attribute is not judged for this prompt.
    public func follows(_ a: Attribute) -> Bool? {
        a.perFrame ? frameTallies.counts[a].map(\.majority) : blockVerdicts[a]
    }

    /// Every judged attribute follows.
    public var followsAll: Bool { Attribute.allCases.allSatisfy { follows($0) ?? true } }

    /// Frame and block verdicts together.
    public var tallies: Tallies {
        var t = frameTallies
        t.add(blockVerdicts)
        return t
    }

    /// Measures a block's frames against a timeline.
    public static func measure(_ rgb: RGBFrames, block: Int, firstFrame: Int, timeline: SceneTimeline,
                               analyzer: FrameAnalyzer, judge: SceneJudge) -> BlockMeasurement {
        let segment = timeline.segmentIndex(at: firstFrame)
        let scene = timeline.segments[segment].scene
        var m = BlockMeasurement(index: block, firstFrame: firstFrame, frames: rgb.count, segment: segment)
        var centroids: [Point?] = []
        for i in 0..<rgb.count {
            let o = analyzer.analyze(rgb.frame(i))
            let verdict = judge.judge(o, against: timeline.truth(at: firstFrame + i).scene)
            m.frameTallies.add(verdict)
            // Motion and continuity follow the object only where one of about the right size is there.
            centroids.append(verdict[.presence] == true ? o.centroid : nil)
            m.sharpnessSum += o.sharpness
            for c in 0..<3 { m.colourSum[c] += o.meanColour[c] }
        }
        m.firstCentroid = centroids.first ?? nil
        m.lastCentroid = centroids.last ?? nil
        m.motion = MotionObservation.measure(centroids, frameSize: analyzer.frameSize)
        m.blockVerdicts = judge.judge(m.motion, against: scene)
        return m
    }
}

/// Running statistics of object-centre jumps across block boundaries (constant memory).
struct JumpAccumulator {
    private var count = 0, unmeasured = 0
    private var jumpSum = 0.0, typicalSum = 0.0, excessSum = 0.0, expectedSum = 0.0, expectedCount = 0
    private var maxJump = -Double.infinity, maxExcess = -Double.infinity

    /// Adds the jump from the last frame of `before` to the first of `after`; returns it and the typical
    /// per-frame step of `before`, or nil when the object is missing on either side.
    @discardableResult
    mutating func add(before: BlockMeasurement, after: BlockMeasurement, frameSize: Int,
                      expected: Double? = nil) -> (jump: Double, typical: Double)? {
        guard let a = before.lastCentroid, let b = after.firstCentroid, let step = before.motion?.meanStep else {
            unmeasured += 1
            return nil
        }
        let jump = b.wrappedOffset(from: a, size: Double(frameSize)).length
        count += 1
        jumpSum += jump
        typicalSum += step
        excessSum += jump - step
        maxJump = max(maxJump, jump)
        maxExcess = max(maxExcess, jump - step)
        if let expected {
            expectedSum += expected
            expectedCount += 1
        }
        return (jump, step)
    }

    var statistics: JumpStatistics {
        var s = JumpStatistics(measured: count, unmeasured: unmeasured)
        guard count > 0 else { return s }
        let n = Double(count)
        s.meanJump = jumpSum / n
        s.maxJump = maxJump
        s.meanTypicalStep = typicalSum / n
        s.meanExcess = excessSum / n
        s.maxExcess = maxExcess
        if expectedCount > 0 { s.meanExpectedJump = expectedSum / Double(expectedCount) }
        return s
    }
}
