import Testing
@testable import ReelEval

/// The analysis on frames drawn the way the data set draws them: every colour, shape and size, on plain
/// and two-tone backgrounds, at sub-pixel positions and across the frame's edges; and frames that do not
/// show the prompt.
@Suite struct FrameAnalyzerTests {
    let analyzer = FrameAnalyzer(frameSize: 128)
    let judge = SceneJudge(frameSize: 128)

    @Test(arguments: Shape.allCases)
    func recoversEveryShapeSizeAndPosition(shape: Shape) throws {
        // The centre, sub-pixel offsets, across each edge and across a corner.
        let positions = [Point(64, 64), Point(40.3, 81.7), Point(2.5, 50.25), Point(100, 126.6), Point(127.2, 0.9)]
        var worstRight = 1.0, bestWrong = 0.0
        for (j, size) in Size.allCases.enumerated() {
            for (k, centre) in positions.enumerated() {
                let colour = SceneColour.allCases[(3 * j + k) % 8]
                let others = SceneColour.allCases.filter { $0 != colour }
                let background = k % 2 == 0 ? Background.plain(others[k]) : Background(top: others[k], bottom: others[k + 1])
                let s = Scene(object: SceneObject(shape: shape, colour: colour, size: size, motion: .staysStill), background: background)
                let t = truth(s, at: centre)
                let o = analyzer.analyze(t)
                let verdict = judge.judge(o, against: s)
                #expect(verdict.count == 5 && verdict.values.allSatisfy { $0 }, "\(s.caption) at \(centre): \(verdict)")
                let c = try #require(o.centroid)
                #expect(c.wrappedOffset(from: t.centroid, size: 128).length < 0.75, "\(s.caption) at \(centre): centre \(c)")
                let match = try #require(shapeMatch(t))
                worstRight = min(worstRight, match.score)
                bestWrong = max(bestWrong, zip(Shape.allCases, match.scores).filter { $0.0 != shape }.map(\.1).max()!)
            }
        }
        // The margin between the right template and the best wrong one, over sizes and positions.
        print("\(shape): right template >= \(worstRight), best wrong <= \(bestWrong)")
        #expect(worstRight > 0.85 && bestWrong < 0.85 && worstRight - bestWrong > 0.05, "\(shape): \(worstRight) vs \(bestWrong)")
    }

    func shapeMatch(_ t: FrameTruth) -> ShapeClassifier.Match? {
        analyzer.segment(SceneRenderer(frameSize: 128).render(t)[...]).region.map(ShapeClassifier.classify)
    }

    /// Every object colour on every other colour, plain and two-tone (the object across the line
    /// between the halves, where the background estimate and the object mask meet).
    @Test func recoversEveryColourOnEveryBackground() {
        for colour in SceneColour.allCases {
            for bg in SceneColour.allCases where bg != colour {
                let second = SceneColour.allCases.first { $0 != colour && $0 != bg }!
                for background in [Background.plain(bg), Background(top: bg, bottom: second), Background(top: second, bottom: bg)] {
                    let s = Scene(object: SceneObject(shape: .circle, colour: colour, size: .large, motion: .staysStill),
                                  background: background)
                    let o = analyzer.analyze(truth(s, at: Point(70.5, 63.2)))
                    #expect(o.background == background && o.objectColour == colour, "\(s.caption): \(o.background), \(String(describing: o.objectColour))")
                    #expect(judge.judge(o, against: s).values.allSatisfy { $0 }, "\(s.caption): \(judge.judge(o, against: s)) \(o)")
                }
            }
        }
    }

    @Test func emptyBackgroundsShowNoObject() {
        for top in SceneColour.allCases {
            for bottom in [top, SceneColour.allCases[(SceneColour.allCases.firstIndex(of: top)! + 3) % 8]] {
                let empty = Scene(object: nil, background: Background(top: top, bottom: bottom))
                let o = analyzer.analyze(truth(empty, at: Point(64, 64)))
                #expect(o.objectColour == nil && o.area == 0 && o.centroid == nil)
                #expect(judge.judge(o, against: empty) == [.background: true, .presence: true])
                // The same frame judged against a prompt with an object: nothing of it is there.
                let colour = SceneColour.allCases.first { !empty.background.contains($0) }!
                let wanted = Scene(object: SceneObject(shape: .square, colour: colour, motion: .left), background: empty.background)
                #expect(judge.judge(o, against: wanted) == [.background: true, .presence: false, .colour: false, .shape: false, .size: false])
            }
        }
    }

    /// A frame that shows something else fails exactly the attributes that differ.
    @Test func catchesFramesThatShowSomethingElse() {
        let drawn = scene("a red circle stays still on a blue background")
        let o = analyzer.analyze(truth(drawn, at: Point(30, 90)))
        func failing(_ prompt: String) -> Set<Attribute> {
            Set(judge.judge(o, against: scene(prompt)).filter { !$0.value }.keys)
        }
        #expect(failing("a red circle stays still on a blue background") == [])
        #expect(failing("a green circle stays still on a blue background") == [.colour])
        #expect(failing("a red triangle stays still on a blue background") == [.shape])
        #expect(failing("a red circle stays still on a white background") == [.background])
        #expect(failing("a red circle stays still on a blue and white background") == [.background])
        #expect(failing("a large red circle stays still on a blue background") == [.presence, .size])
        #expect(failing("a small red circle stays still on a blue background") == [.presence, .size])
        #expect(failing("an empty blue background") == [.presence])
        // Two objects: the larger one is the object; a second, smaller one of another colour loses the vote.
        var pixels = SceneRenderer(frameSize: 128).render(truth(drawn, at: Point(30, 90)))
        let other = SceneRenderer(frameSize: 128).render(truth(scene("a small yellow square stays still on a blue background"), at: Point(100, 30)))
        for i in stride(from: 0, to: pixels.count, by: 3) where other[i] > 200 { pixels[i] = other[i]; pixels[i + 1] = other[i + 1]; pixels[i + 2] = other[i + 2] }
        let two = analyzer.analyze(pixels[...])
        #expect(two.objectColour == .red && two.shape == .circle)
    }

    /// Decoded video is softer than drawn frames: after a 3x3 box blur (edges clamped, as a decoder pads) plus +-10 levels of noise every
    /// attribute is still recognised, for every shape, size and colour (on two-tone backgrounds).
    @Test func toleratesMildBlurAndNoise() {
        var rng = SplitMix64(seed: 1)
        let colours = SceneColour.allCases
        for shape in Shape.allCases {
            for size in Size.allCases {
                for (k, colour) in colours.enumerated() {
                    let others = colours.filter { $0 != colour }
                    let s = Scene(object: SceneObject(shape: shape, colour: colour, size: size, motion: .staysStill),
                                  background: Background(top: others[k % 7], bottom: others[(k + 3) % 7]))
                    let sharp = SceneRenderer(frameSize: 128).render(truth(s, at: Point(20.5 + Double(11 * k), 61.3)))
                    let o = analyzer.analyze(blurred(sharp, noise: 10, rng: &rng)[...])
                    let verdict = judge.judge(o, against: s)
                    #expect(verdict.count == 5 && verdict.values.allSatisfy { $0 }, "\(s.caption): \(verdict) \(o)")
                }
            }
        }
    }

    /// 3x3 box blur (separable, edges clamped) plus uniform noise of +-`noise` levels.
    func blurred(_ p: [UInt8], noise: Int, rng: inout SplitMix64) -> [UInt8] {
        let s = 128
        var rows = [Int](repeating: 0, count: p.count), out = [UInt8](repeating: 0, count: p.count)
        rows.withUnsafeMutableBufferPointer { rows in
            p.withUnsafeBufferPointer { p in
                for y in 0..<s {
                    for x in 0..<s {
                        for c in 0..<3 {
                            rows[(y * s + x) * 3 + c] = Int(p[(y * s + max(x - 1, 0)) * 3 + c]) + Int(p[(y * s + x) * 3 + c])
                                + Int(p[(y * s + min(x + 1, s - 1)) * 3 + c])
                        }
                    }
                }
            }
            out.withUnsafeMutableBufferPointer { out in
                for y in 0..<s {
                    for i in 0..<(s * 3) {
                        let sum = rows[max(y - 1, 0) * s * 3 + i] + rows[y * s * 3 + i] + rows[min(y + 1, s - 1) * s * 3 + i]
                        out[y * s * 3 + i] = UInt8(min(max(sum / 9 + Int(rng.next() % UInt64(2 * noise + 1)) - noise, 0), 255))
                    }
                }
            }
        }
        return out
    }
}
