/// What one frame shows, measured without knowing the prompt (what a viewer sees).
public struct FrameObservation: Sendable, Codable {
    /// Median colour of the top and bottom halves (the object covers at most 28% of a half), and the
    /// palette colours nearest to them.
    public var topRGB: RGB, bottomRGB: RGB
    public var background: Background
    /// The most frequent palette colour among pixels that are not background (nil: too few such pixels).
    public var objectColour: SceneColour?
    /// Pixels of the object's largest connected region (4-neighbours, wrapping around the edges).
    public var area: Int
    /// Pixels of the object's colour in all regions (area + fragments).
    public var maskPixels: Int
    /// Centre of the largest region, on the torus (nil when there is none).
    public var centroid: Point?
    /// The shape whose template matches the region best, and the intersection over union of that match.
    public var shape: Shape?
    public var shapeScore: Double
    /// Mean gradient magnitude of the luma (levels per pixel): edges make it, blur lowers it.
    public var sharpness: Double
    /// Mean RGB of the frame.
    public var meanColour: [Double]
}

/// Thresholds of the frame analysis, in RGB units (0-255 per channel) and pixels at a 128-pixel frame.
/// The palette's closest pair (yellow, orange) is 76 apart, which bounds them.
public struct AnalysisThresholds: Sendable {
    /// A pixel within this distance of its half's background colour is background.
    public var background = 40.0
    /// Rows this close to the line between the two halves also count as background when they lie near
    /// a blend of the two colours (a decoder blurs that line) and no nearer to a palette colour.
    public var seamRows = 3
    /// A non-background pixel votes for the nearest palette colour only within this distance of it.
    public var paletteVote = 70.0
    /// An object pixel is nearer the object's colour than either background colour, and within this
    /// distance of it (training/data/checks.py uses the same rule).
    public var object = 90.0
    /// Fewer votes than this (at 128 x 128; scaled with the frame's area) is no object. The smallest
    /// object, a small triangle, has 189 pixels.
    public var minimumObjectPixels = 24.0
    /// Below this template match (intersection over union) the shape is not recognised.
    public var minimumShapeScore = 0.5

    public init() {}
}

/// Measures frames of the tiny model's scenes: background colours per half, the object's colour, its
/// region (area, centre on the torus) and shape, sharpness and mean colour. Square frames only (the data
/// set's).
public struct FrameAnalyzer: Sendable {
    public let frameSize: Int
    public var thresholds: AnalysisThresholds

    public init(frameSize: Int, thresholds: AnalysisThresholds = AnalysisThresholds()) {
        self.frameSize = frameSize
        self.thresholds = thresholds
    }

    /// Analyses one frame: `pixels` holds frameSize x frameSize RGB triples, row by row.
    public func analyze(_ pixels: ArraySlice<UInt8>) -> FrameObservation {
        precondition(pixels.count == frameSize * frameSize * 3, "a frame of \(frameSize)x\(frameSize) RGB")
        return pixels.withUnsafeBufferPointer { analyze(UnsafeBufferPointer(rebasing: $0[...])) }
    }

    private func analyze(_ p: UnsafeBufferPointer<UInt8>) -> FrameObservation {
        let seg = segment(p)
        let (sharpness, mean) = sharpnessAndMean(p)
        var centroid: Point?
        var shape: Shape?
        var score = 0.0
        if let region = seg.region {
            let centre = region.centre
            let s = Double(frameSize)
            centroid = Point(positiveRemainder(centre.x, s), positiveRemainder(centre.y, s))
            let match = ShapeClassifier.classify(region)
            score = match.score
            shape = match.score >= thresholds.minimumShapeScore ? match.shape : nil
        }
        return FrameObservation(topRGB: seg.top, bottomRGB: seg.bottom, background: seg.background, objectColour: seg.colour,
                                area: seg.region?.pixels.count ?? 0, maskPixels: seg.maskPixels, centroid: centroid, shape: shape,
                                shapeScore: score, sharpness: sharpness, meanColour: mean)
    }

    /// Background, object colour and the object's region of a frame.
    struct Segmentation {
        var top: RGB, bottom: RGB
        var background: Background
        var colour: SceneColour?
        var region: Region?
        var maskPixels = 0
    }

    func segment(_ pixels: ArraySlice<UInt8>) -> Segmentation {
        pixels.withUnsafeBufferPointer { segment(UnsafeBufferPointer(rebasing: $0[...])) }
    }

    private func segment(_ p: UnsafeBufferPointer<UInt8>) -> Segmentation {
        let s = frameSize, half = s / 2
        let top = medianColour(p, rows: 0..<half), bottom = medianColour(p, rows: half..<s)
        var result = Segmentation(top: top, bottom: bottom,
                                  background: Background(top: SceneColour.nearest(to: top), bottom: SceneColour.nearest(to: bottom)))

        // Pass 1: which pixels are not background, and which palette colour each of those is nearest to.
        let bgLimit = Int(thresholds.background * thresholds.background)
        let voteLimit = Int(thresholds.paletteVote * thresholds.paletteVote)
        var foreground = [Bool](repeating: false, count: s * s)
        var votes = [Int](repeating: 0, count: SceneColour.allCases.count)
        for y in 0..<s {
            let own = y < half ? top : bottom
            let nearSeam = abs(2 * y + 1 - s) < 2 * thresholds.seamRows
            for x in 0..<s {
                let o = (y * s + x) * 3
                let r = Int(p[o]), g = Int(p[o + 1]), b = Int(p[o + 2])
                if own.distanceSquared(r, g, b) <= bgLimit { continue }
                let (c, d) = SceneColour.nearest(r, g, b)
                if nearSeam {
                    // A blend of the two halves is background, unless the pixel is nearer a palette colour
                    // (an orange object on red over yellow lies near their blends, but nearer orange).
                    let e = segmentDistanceSquared(r, g, b, top, bottom)
                    if e <= Double(bgLimit) && e <= Double(d) { continue }
                }
                foreground[y * s + x] = true
                if d <= voteLimit { votes[SceneColour.allCases.firstIndex(of: c)!] += 1 }
            }
        }
        let minimum = thresholds.minimumObjectPixels * Double(s * s) / (128 * 128)
        let best = votes.indices.max { votes[$0] < votes[$1] }!
        guard Double(votes[best]) >= minimum else { return result }
        let colour = SceneColour.allCases[best]
        result.colour = colour

        // Pass 2: the object's mask, then its largest region on the torus.
        let c = colour.rgb
        let objectLimit = Int(thresholds.object * thresholds.object)
        var mask = [Bool](repeating: false, count: s * s)
        for i in 0..<(s * s) where foreground[i] {
            let r = Int(p[3 * i]), g = Int(p[3 * i + 1]), b = Int(p[3 * i + 2])
            let d = c.distanceSquared(r, g, b)
            if d <= objectLimit && d < top.distanceSquared(r, g, b) && d < bottom.distanceSquared(r, g, b) {
                mask[i] = true
                result.maskPixels += 1
            }
        }
        let region = Region.largest(in: mask, size: s)
        result.region = region.pixels.isEmpty ? nil : region
        return result
    }

    /// Per-channel median of the rows' pixels (a histogram per channel).
    private func medianColour(_ p: UnsafeBufferPointer<UInt8>, rows: Range<Int>) -> RGB {
        var hist = [Int](repeating: 0, count: 3 * 256)
        for i in (rows.lowerBound * frameSize)..<(rows.upperBound * frameSize) {
            hist[Int(p[3 * i])] += 1
            hist[256 + Int(p[3 * i + 1])] += 1
            hist[512 + Int(p[3 * i + 2])] += 1
        }
        let half = (rows.count * frameSize + 1) / 2
        func median(_ channel: Int) -> UInt8 {
            var seen = 0
            for v in 0..<256 {
                seen += hist[channel * 256 + v]
                if seen >= half { return UInt8(v) }
            }
            return 255
        }
        return RGB(median(0), median(1), median(2))
    }

    /// Squared distance from (r, g, b) to the segment between two colours (their blends).
    private func segmentDistanceSquared(_ r: Int, _ g: Int, _ b: Int, _ a: RGB, _ z: RGB) -> Double {
        let ax = Double(a.r), ay = Double(a.g), az = Double(a.b)
        let dx = Double(z.r) - ax, dy = Double(z.g) - ay, dz = Double(z.b) - az
        let px = Double(r) - ax, py = Double(g) - ay, pz = Double(b) - az
        let len = dx * dx + dy * dy + dz * dz
        let t = len > 0 ? min(max((px * dx + py * dy + pz * dz) / len, 0), 1) : 0
        let ex = px - t * dx, ey = py - t * dy, ez = pz - t * dz
        return ex * ex + ey * ey + ez * ez
    }

    /// Mean gradient magnitude of the luma (forward differences, inside the frame) and the mean RGB.
    private func sharpnessAndMean(_ p: UnsafeBufferPointer<UInt8>) -> (Double, [Double]) {
        let s = frameSize
        var luma = [Double](repeating: 0, count: s * s)
        var sum = [0.0, 0.0, 0.0]
        for i in 0..<(s * s) {
            let r = Double(p[3 * i]), g = Double(p[3 * i + 1]), b = Double(p[3 * i + 2])
            luma[i] = 0.299 * r + 0.587 * g + 0.114 * b
            sum[0] += r; sum[1] += g; sum[2] += b
        }
        var gradient = 0.0
        for y in 0..<(s - 1) {
            for x in 0..<(s - 1) {
                let i = y * s + x
                let gx = luma[i + 1] - luma[i], gy = luma[i + s] - luma[i]
                gradient += (gx * gx + gy * gy).squareRoot()
            }
        }
        let n = Double(s * s)
        return (gradient / Double((s - 1) * (s - 1)), sum.map { $0 / n })
    }
}

/// A connected region of a mask on the torus, in unwrapped coordinates (a region that crosses an edge
/// keeps going past it, so its pixels are contiguous).
struct Region {
    var pixels: [(x: Int, y: Int)] = []

    /// Mean of the pixel centres (may lie outside the frame; reduce modulo the size).
    var centre: Point {
        var sx = 0.0, sy = 0.0
        for p in pixels { sx += Double(p.x); sy += Double(p.y) }
        let n = Double(pixels.count)
        return Point(sx / n + 0.5, sy / n + 0.5)
    }

    /// The largest 4-connected region of `mask` (size x size, row-major), wrapping at the edges.
    static func largest(in mask: [Bool], size s: Int) -> Region {
        var seen = [Bool](repeating: false, count: s * s)
        var best = Region()
        var queue: [(x: Int, y: Int)] = []
        for start in 0..<(s * s) where mask[start] && !seen[start] {
            seen[start] = true
            queue.removeAll(keepingCapacity: true)
            queue.append((start % s, start / s))
            var head = 0
            while head < queue.count {
                let (x, y) = queue[head]
                head += 1
                for d in 0..<4 {
                    let nx = x + (d == 0 ? 1 : d == 1 ? -1 : 0), ny = y + (d == 2 ? 1 : d == 3 ? -1 : 0)
                    let i = ((ny % s + s) % s) * s + (nx % s + s) % s
                    if mask[i] && !seen[i] {
                        seen[i] = true
                        queue.append((nx, ny))
                    }
                }
            }
            if queue.count > best.pixels.count { best = Region(pixels: queue) }
        }
        return best
    }
}
