/// Correct / judged counts of one attribute.
public struct Tally: Sendable, Codable, Equatable {
    public var correct = 0
    public var judged = 0
    public init(correct: Int = 0, judged: Int = 0) { self.correct = correct; self.judged = judged }

    public var rate: Double? { judged > 0 ? Double(correct) / Double(judged) : nil }
    /// More than half correct.
    public var majority: Bool { 2 * correct > judged }

    public mutating func add(_ ok: Bool) { judged += 1; if ok { correct += 1 } }
    public static func + (a: Tally, b: Tally) -> Tally { Tally(correct: a.correct + b.correct, judged: a.judged + b.judged) }
}

/// Tallies per attribute.
public struct Tallies: Sendable, Equatable {
    public var counts: [Attribute: Tally] = [:]
    public init() {}

    public subscript(_ a: Attribute) -> Tally { counts[a] ?? Tally() }
    public mutating func add(_ verdict: [Attribute: Bool]) { for (a, ok) in verdict { counts[a, default: Tally()].add(ok) } }
    public mutating func merge(_ other: Tallies) { for (a, t) in other.counts { counts[a] = self[a] + t } }

    /// One entry per attribute that was judged, in `Attribute.allCases` order.
    public var rates: [AttributeRate] {
        Attribute.allCases.compactMap { a in counts[a].map { AttributeRate(attribute: a, tally: $0) } }
    }
}

public struct AttributeRate: Sendable, Codable, Equatable {
    public var attribute: Attribute
    /// Frames (per-frame attributes) or blocks (motion, speed).
    public var unit: String
    public var correct: Int
    public var judged: Int
    public var rate: Double?

    public init(attribute: Attribute, tally: Tally) {
        self.attribute = attribute
        unit = attribute.perFrame ? "frames" : "blocks"
        correct = tally.correct
        judged = tally.judged
        rate = tally.rate
    }
}

/// Everything `reel eval` measured; written as JSON by `--json`.
public struct EvalReport: Sendable, Codable {
    public var source: String
    public var frameSize: Int
    public var seed: UInt64
    public var adherence: AdherenceReport?
    public var switches: SwitchReport?
    public var longRun: LongRunReport?
    public var restyle: RestyleReport?
    public var animate: AnimateReport?
    /// Object-centre jump at block boundaries where the prompt stays: the seams' own baseline.
    public var seams: JumpStatistics
    public var frames: Int
    public var seconds: Double
    public var framesPerSecond: Double
    /// Wall time of the frame analysis per frame (included in `seconds`).
    public var analysisMillisecondsPerFrame: Double
}

public struct AdherenceReport: Sendable, Codable {
    public var prompts: Int
    public var blocksPerVideo: Int
    public var frames: Int
    public var rates: [AttributeRate]
    /// Blocks where every judged attribute follows the prompt (per-frame ones in most of the block's frames).
    public var allAttributesBlocks: Tally
    public var perPrompt: [PromptAdherence]
}

public struct PromptAdherence: Sendable, Codable {
    public var prompt: String
    public var seed: UInt64
    public var rates: [AttributeRate]
}

public struct SwitchReport: Sendable, Codable {
    public var videos: Int
    /// The block at which each video switches, and blocks generated from it on.
    public var switchBlock: Int
    public var blocksFromSwitch: Int
    public var byKind: [SwitchKindSummary]
    public var continuity: JumpStatistics
    public var results: [SwitchResult]
}

public struct SwitchResult: Sendable, Codable {
    public var kind: SwitchKind
    public var from: String
    public var to: String
    public var seed: UInt64
    /// First video frame of the new prompt.
    public var switchFrame: Int
    /// Per block from the switch block on: the changed attribute follows the new prompt.
    public var followed: [Bool]
    /// Blocks after the switch block until the attribute follows the new prompt in that block and every
    /// later one (0: from the switch block itself); nil: it never settles within the run.
    public var latencyBlocks: Int?
    /// The block before the switch followed the old prompt on this attribute.
    public var heldBefore: Bool
    /// Object-centre displacement (pixels) from the last frame before the switch to the first after it.
    public var jump: Double?
    /// Mean per-frame displacement over the block before the switch.
    public var typicalStep: Double?
    /// The displacement the ground truth has there (the triangle's centroid sits 0.2 r below its centre,
    /// so a shape switch may move the centroid a little).
    public var expectedJump: Double
}

public struct SwitchKindSummary: Sendable, Codable {
    public var kind: SwitchKind
    public var count: Int
    /// Switches that settled within the run.
    public var settled: Int
    public var meanLatencyBlocks: Double?
    public var maxLatencyBlocks: Int?
    /// Fraction of switches that never settled.
    public var neverRate: Double?
    public var heldBeforeRate: Double?
}

/// Object-centre jumps across a frame boundary against the typical per-frame motion before it.
public struct JumpStatistics: Sendable, Codable {
    public var measured = 0
    /// Boundaries where the object was missing on one side.
    public var unmeasured = 0
    public var meanJump: Double?
    public var maxJump: Double?
    public var meanTypicalStep: Double?
    /// Jump minus typical step: how much further the object moved than it usually does in a frame.
    public var meanExcess: Double?
    public var maxExcess: Double?
    /// At switch frames: the ground truth's own mean jump there (a motion that starts or speeds up, or a
    /// triangle's centroid, moves the centre further than the step before).
    public var meanExpectedJump: Double?
}

public struct LongRunReport: Sendable, Codable {
    public var prompt: String
    public var frames: Int
    public var blocks: Int
    public var windowBlocks: Int
    /// Sharpness of the ground truth drawn at frame 0: what a sharp frame of this prompt scores.
    public var referenceSharpness: Double
    public var windows: [WindowStatistics]
    public var drift: Drift
    public var framesPerSecond: Double
}

public struct WindowStatistics: Sendable, Codable {
    public var index: Int
    public var firstFrame: Int
    public var frames: Int
    public var blocks: Int
    public var sharpness: Double
    public var meanColour: [Double]
    public var rates: [AttributeRate]
    /// Resident memory of the process at the window's end (MB; Linux only).
    public var residentMegabytes: Double?

    public func rate(_ a: Attribute) -> Double? { rates.first { $0.attribute == a }?.rate }
}

/// Last window minus first window (the last full window when the run ends with a shorter one).
public struct Drift: Sendable, Codable {
    public var sharpness: Double
    public var sharpnessRatio: Double?
    /// RGB distance between the first and last windows' mean colours.
    public var meanColourDistance: Double
    /// Change of each attribute's rate (last - first).
    public var rates: [String: Double]
    public var residentMegabytes: Double?
}
