import Testing
@testable import ReelEval

/// The analysis on frames drawn the way the data set draws them: every colour, shape and size, on plain
/// and two-tone backgrounds, at sub-pixel positions and across the frame's edges.
@Suite struct FrameAnalyzerTests {
    static let size = 128
    let renderer = SceneRenderer(frameSize: size)
    let analyzer = FrameAnalyzer(frameSize: size)
    let judge = SceneJudge(frameSize: size)

    func frame(_ scene: Scene, at centre: Point) -> ArraySlice<UInt8> {
        let r = scene.object.map { SceneGeometry(frameSize: Self.size).radius($0.size) } ?? 0
        return renderer.render(FrameTruth(scene: scene, centre: centre, velocity: Point(0, 0), radius: r, segment: 0))[...]
    }

    @Test(arguments: Shape.allCases)
    func recoversEveryShapeSizeAndPosition(shape: Shape) {
        // Positions: the centre, sub-pixel offsets, and across each edge and a corner.
        let positions = [Point(64, 64), Point(40.3, 81.7), Point(2.5, 50.25), Point(100, 126.6), Point(127.2, 0.9)]
        var worstRight = 1.0, bestWrong = 0.0
        for size in Size.allCases {
            for (k, centre) in positions.enumerated() {
                let colour = SceneColour.allCases[(k + size.hashValue & 7) % 8]
                let bg = SceneColour.allCases.filter { $0 != colour }
                let background = k % 2 == 0 ? Background.plain(bg[k % bg.count]) : Background(top: bg[k], bottom: bg[k + 1])
                let scene = Scene(object: SceneObject(shape: shape, colour: colour, size: size, motion: .staysStill), background: background)
                let o = analyzer.analyze(frame(scene, at: centre))
                let verdict = judge.judge(o, against: scene)
                #expect(verdict.values.allSatisfy { $0 }, "\(scene.caption) at \(centre): \(verdict) \(o)")
                let truth = FrameTruth(scene: scene, centre: centre, velocity: Point(0, 0),
                                       radius: SceneGeometry(frameSize: Self.size).radius(size), segment: 0)
                let c = try! #require(o.centroid)
                #expect(c.wrappedOffset(from: truth.centroid, size: 128).length < 0.5, "\(scene.caption) at \(centre): centre \(c)")
                let shapes = Shape.allCases
                worstRight = min(worstRight, o.shapeScore)
                if let region = regionScores(o, scene: scene, centre: centre) {
                    bestWrong = max(bestWrong, zip(shapes, region).filter { $0.0 != shape }.map(\.1).max()!)
                }
            }
        }
        print("\(shape): right template scores >= \(worstRight), wrong ones <= \(bestWrong)")
    }

    func regionScores(_ o: FrameObservation, scene: Scene, centre: Point) -> [Double]? {
        let pixels = frame(scene, at: centre)
        let s = Self.size
        let c = scene.object!.colour.rgb
        var mask = [Bool](repeating: false, count: s * s)
        for i in 0..<(s * s) {
            let j = pixels.startIndex + 3 * i
            mask[i] = c.distanceSquared(Int(pixels[j]), Int(pixels[j + 1]), Int(pixels[j + 2])) < 90 * 90
        }
        return ShapeClassifier.classify(Region.largest(in: mask, size: s)).scores
    }
}
