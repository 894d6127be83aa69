import Testing
@testable import ReelEval

/// The caption grammar, the sampler, and the simulator and renderer against the data set's own code.
@Suite struct SceneGrammarTests {
    @Test func parsesTheDataSetsCaptionsAndWritesThemBack() throws {
        let captions = SceneFixture.shared.captions
        #expect(captions.count == 200)
        for text in captions {
            let s = try Scene(caption: text)
            #expect(s.caption == text)
        }
        #expect(captions.contains { $0.hasPrefix("an empty") })
    }

    @Test func everyAttributeRoundTrips() throws {
        for shape in Shape.allCases {
            for colour in SceneColour.allCases {
                for size in Size.allCases {
                    for motion in Motion.allCases {
                        for speed in Speed.allCases where motion != .staysStill || speed == .normal {
                            let s = Scene(object: SceneObject(shape: shape, colour: colour, size: size, motion: motion, speed: speed),
                                          background: Background(top: colour == .red ? .blue : .red, bottom: .white))
                            #expect(try Scene(caption: s.caption) == s)
                        }
                    }
                }
            }
        }
        #expect(try Scene(caption: "  A Large RED circle moves up and left  QUICKLY on a blue background. ")
                == Scene(object: SceneObject(shape: .circle, colour: .red, size: .large, motion: .upLeft, speed: .quickly),
                         background: .plain(.blue)))
        #expect(try Scene(caption: "an empty white and black background") == Scene(object: nil, background: Background(top: .white, bottom: .black)))
    }

    @Test func rejectsWhatTheGrammarDoesNotSay() {
        let bad: [(String, String)] = [
            ("a pink circle moves left on a blue background", "'pink'"),
            ("a red blob moves left on a blue background", "expected a shape"),
            ("a red circle moves sideways on a blue background", "expected a motion"),
            ("a red circle moves left", "expected 'on'"),
            ("a red circle moves left on a blue", "expected 'background'"),
            ("a red circle moves left on a blue background today", "'today'"),
            ("", "expected 'a'"),
        ]
        for (text, message) in bad {
            #expect(throws: CaptionError.self) { try Scene(caption: text) }
            do { _ = try Scene(caption: text) } catch { #expect(error.description.contains(message), "\(error)") }
        }
    }

    @Test func samplerIsDeterministicAndKeepsTheDataSetsRules() {
        var a = PromptSampler(seed: 3), b = PromptSampler(seed: 3), c = PromptSampler(seed: 4)
        let first = (0..<50).map { _ in a.scene() }
        #expect(first == (0..<50).map { _ in b.scene() })
        #expect(first != (0..<50).map { _ in c.scene() })
        #expect(first.allSatisfy { !$0.background.contains($0.object!.colour) })
        #expect(first.contains { !$0.background.isPlain } && first.contains { $0.background.isPlain })
        let geometry = SceneGeometry(frameSize: 128)
        for (i, s) in first.enumerated() {
            let kind = SwitchKind.allCases[i % 4]
            guard let t = a.switched(s, kind: kind, centre: Point(64, 64), geometry: geometry) else {
                Issue.record("no switch of \(kind) from \(s.caption)")
                continue
            }
            let (o, n) = (s.object!, t.object!)
            #expect(t != s)
            #expect((o.colour != n.colour) == (kind == .colour))
            #expect((o.shape != n.shape) == (kind == .shape))
            #expect((o.motion != n.motion || o.speed != n.speed) == (kind == .motion))
            #expect((s.background != t.background) == (kind == .background))
            #expect(!t.background.contains(n.colour))
        }
    }

    /// Centres and velocities of the data set's simulator: wrap-around, bounces (with their direction
    /// carried over a speed switch), switches on any frame, random starts, 64- and 128-pixel frames.
    @Test func timelineMatchesTheDataSetsSimulator() throws {
        for t in SceneFixture.shared.timelines {
            let segments = try t.segments.map { SceneTimeline.Segment(start: $0.start, scene: try Scene(caption: $0.caption)) }
            let timeline = SceneTimeline(segments, frameSize: t.frameSize, start: t.start.map { Point($0[0], $0[1]) })
            for (k, f) in t.frames.enumerated() {
                let got = timeline.truth(at: f)
                let want = Point(t.centre[k][0], t.centre[k][1])
                // float32 in the fixture: 1e-3 px over 400 frames.
                #expect(got.centre.wrappedOffset(from: want, size: Double(t.frameSize)).length < 1e-3,
                        "frame \(f) of \(t.segments.map(\.caption)): \(got.centre) vs \(want)")
                #expect(abs(got.velocity.x - t.velocity[k][0]) < 1e-4 && abs(got.velocity.y - t.velocity[k][1]) < 1e-4)
            }
        }
        let kinds = Set(SceneFixture.shared.timelines.flatMap { $0.segments.compactMap { try? Scene(caption: $0.caption).object?.motion.kind } })
        #expect(kinds == [.wrap, .bounce, .still])
    }

    /// Frames drawn by the data set's renderer, pixel for pixel (rounding may differ by one level).
    @Test func rendererMatchesTheDataSetsFrames() throws {
        for f in SceneFixture.shared.frames {
            let bg = f.background.map { SceneColour(rawValue: $0)! }
            let s = Scene(object: SceneObject(shape: Shape(rawValue: f.shape)!, colour: SceneColour(rawValue: f.colour)!, motion: .staysStill),
                          background: Background(top: bg[0], bottom: bg.last!))
            let got = SceneRenderer(frameSize: f.frameSize).render(
                FrameTruth(scene: s, centre: Point(f.centre[0], f.centre[1]), velocity: Point(0, 0), radius: f.radius, segment: 0))
            let want = [UInt8](try #require(Data(base64Encoded: f.rgb)))
            #expect(got.count == want.count)
            let worst = zip(got, want).map { abs(Int($0) - Int($1)) }.max() ?? 0
            #expect(worst <= 1, "\(f.shape) at \(f.centre): differs by \(worst)")
        }
    }
}

import Foundation
