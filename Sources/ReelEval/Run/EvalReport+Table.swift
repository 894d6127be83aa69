import Foundation

extension EvalReport {
    /// The report as a readable table (the JSON has everything, per prompt, per switch and per window).
    public var table: String {
        var out: [String] = []
        out.append("reel eval: \(source); \(frameSize)x\(frameSize), seed \(seed)")
        if let a = adherence {
            out.append("")
            out.append("Prompt adherence: \(a.prompts) prompts drawn from the grammar, \(a.blocksPerVideo) blocks each (\(a.frames) frames)")
            out.append(Self.row(["attribute", "correct", "judged", "rate"], widths: [14, 9, 14, 7]))
            for r in a.rates {
                out.append(Self.row([r.attribute.rawValue, "\(r.correct)", "\(r.judged) \(r.unit)", Self.percent(r.rate)], widths: [14, 9, 14, 7]))
            }
            out.append(Self.row(["all (blocks)", "\(a.allAttributesBlocks.correct)", "\(a.allAttributesBlocks.judged) blocks",
                                 Self.percent(a.allAttributesBlocks.rate)], widths: [14, 9, 14, 7]))
        }
        if let s = switches {
            out.append("")
            out.append("Switch responsiveness: \(s.videos) videos, one attribute switched at block \(s.switchBlock), "
                       + "\(s.blocksFromSwitch) blocks from the switch on;")
            out.append("  latency = blocks after the switch block until the attribute follows the new prompt for good")
            let w = [12, 7, 9, 14, 13, 8, 13]
            out.append(Self.row(["switched", "videos", "settled", "mean latency", "max latency", "never", "held before"], widths: w))
            for k in s.byKind {
                out.append(Self.row([k.kind.rawValue, "\(k.count)", "\(k.settled)", Self.number(k.meanLatencyBlocks, "%.2f"),
                                     k.maxLatencyBlocks.map(String.init) ?? "-", Self.percent(k.neverRate), Self.percent(k.heldBeforeRate)],
                                    widths: w))
            }
            out.append("")
            out.append("Continuity (object centre, pixels):")
            out.append("  at the switch frame: " + Self.describe(s.continuity))
        }
        out.append("  at block seams without a switch: " + Self.describe(seams))
        if let l = longRun {
            out.append("")
            out.append("Long run: \(l.frames) frames (\(l.blocks) blocks) of \"\(l.prompt)\", windows of \(l.windowBlocks) blocks; "
                       + String(format: "%.1f FPS", l.framesPerSecond))
            let w = [8, 13, 10, 17, 9, 8, 7, 11, 8, 10]
            out.append(Self.row(["window", "frames", "sharpness", "mean colour", "present", "colour", "shape", "background",
                                 "motion", "resident"], widths: w))
            for win in Self.sample(l.windows, count: 12) {
                let rgb = win.meanColour.map { String(format: "%.0f", $0) }.joined(separator: ",")
                out.append(Self.row(["\(win.index)", "\(win.firstFrame)-\(win.firstFrame + win.frames - 1)",
                                     String(format: "%.3f", win.sharpness), rgb, Self.percent(win.rate(.presence)),
                                     Self.percent(win.rate(.colour)), Self.percent(win.rate(.shape)),
                                     Self.percent(win.rate(.background)), Self.percent(win.rate(.motion)),
                                     Self.number(win.residentMegabytes, "%.0f MB")], widths: w))
            }
            let d = l.drift
            var drift = String(format: "  drift, last full window - first: sharpness %+.3f (%@ of the first; the drawn ground truth scores %.3f), "
                               + "mean colour moved %.1f", d.sharpness, Self.number(d.sharpnessRatio, "%.2fx"), l.referenceSharpness,
                               d.meanColourDistance)
            for a in Attribute.allCases {
                if let v = d.rates[a.rawValue] { drift += String(format: ", %@ %+.0f%%", a.rawValue, v * 100) }
            }
            if let r = d.residentMegabytes { drift += String(format: ", resident memory %+.0f MB", r) }
            out.append(drift)
        }
        if let r = restyle {
            out.append("")
            out.append("Video-to-video: \(r.videos) drawn inputs of \(r.framesPerVideo) frames (object off centre), prompts changing colour, "
                       + String(format: "background or both; noise scale %.2f, %d steps", r.noiseScale, r.steps))
            out.append(Self.row(["attribute", "correct", "judged", "rate"], widths: [14, 9, 14, 7]))
            for a in r.rates {
                out.append(Self.row([a.attribute.rawValue, "\(a.correct)", "\(a.judged) \(a.unit)", Self.percent(a.rate)], widths: [14, 9, 14, 7]))
            }
            out.append("  input's colour kept (colour-changing prompts): \(r.inputColourKept.correct) of \(r.inputColourKept.judged) frames ("
                       + Self.percent(r.inputColourKept.rate) + ")")
            out.append("  centre error against the input's object: " + Self.describe(r.centreError, "px"))
            out.append("  velocity error per block against the input's: " + Self.describe(r.velocityError, "px/frame"))
            out.append("  latency: input frames read beyond a block's last frame when it came out: "
                       + "\(r.latencyFramesMin.map(String.init) ?? "-") to \(r.latencyFramesMax.map(String.init) ?? "-")")
        }
        if let a = animate {
            out.append("")
            out.append("Image-to-video: \(a.videos) drawn images (object off centre), \(a.blocksPerVideo) blocks each (the image's still block first)")
            out.append("  start error (first generated block, against the image's position moved as prompted): " + Self.describe(a.startError, "px"))
            out.append("  centre error (every generated frame): " + Self.describe(a.centreError, "px"))
            out.append(Self.row(["attribute", "correct", "judged", "rate"], widths: [14, 9, 14, 7]))
            for r in a.rates {
                out.append(Self.row([r.attribute.rawValue, "\(r.correct)", "\(r.judged) \(r.unit)", Self.percent(r.rate)], widths: [14, 9, 14, 7]))
            }
        }
        out.append("")
        out.append(String(format: "%d frames in %.1f s (%.1f FPS, analysis %.2f ms/frame included)", frames, seconds,
                          framesPerSecond, analysisMillisecondsPerFrame))
        return out.joined(separator: "\n")
    }

    /// The report as JSON (snake_case keys).
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try encoder.encode(self)
    }

    static func describe(_ j: JumpStatistics) -> String {
        guard j.measured > 0 else { return "not measured (\(j.unmeasured) boundaries without an object on both sides)" }
        var s = String(format: "jump mean %.2f, max %.2f; typical per-frame motion %.2f; jump - typical mean %+.2f, max %+.2f",
                       j.meanJump!, j.maxJump!, j.meanTypicalStep!, j.meanExcess!, j.maxExcess!)
        if let e = j.meanExpectedJump { s += String(format: "; the ground truth's jump mean %.2f", e) }
        s += " (\(j.measured) boundaries" + (j.unmeasured > 0 ? ", \(j.unmeasured) without an object)" : ")")
        return s
    }

    static func describe(_ e: ErrorStatistics, _ unit: String) -> String {
        guard e.count > 0 else { return "not measured (no object found)" }
        return String(format: "median %.2f, 90th percentile %.2f, mean %.2f %@ (%d measured)", e.median!, e.p90!, e.mean!, unit, e.count)
    }

    /// At most `count` items: the first, the last and evenly spaced ones between.
    static func sample<T>(_ items: [T], count: Int) -> [T] {
        guard items.count > count else { return items }
        return (0..<count).map { items[Int((Double($0) * Double(items.count - 1) / Double(count - 1)).rounded())] }
    }

    static func percent(_ rate: Double?) -> String { rate.map { String(format: "%.1f%%", $0 * 100) } ?? "-" }
    static func number(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "-" }

    static func row(_ cells: [String], widths: [Int]) -> String {
        "  " + zip(cells, widths).map { $0.padding(toLength: max($1, $0.count + 1), withPad: " ", startingAt: 0) }
            .joined().trimmingCharacters(in: .whitespaces)
    }
}
