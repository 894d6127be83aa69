import Foundation

/// An attribute of a prompt that a frame or a block follows or not.
public enum Attribute: String, CaseIterable, Sendable, Codable {
    /// Both halves' colours are the prompt's (a plain background: the same colour in both).
    case background
    /// The dominant non-background colour is the object's.
    case colour
    /// The object's region matches the prompt's shape best.
    case shape
    /// An object region within a factor of 2 of the area of the prompt's size (for the shape seen; an
    /// empty prompt: no object).
    case presence
    /// The region's area is nearest to the prompt's size (of small, normal, large, for the shape seen).
    case size
    /// Per block: the centre moves in the prompt's direction (within 22.5 degrees), bounces along the
    /// prompt's axis, or stays still; measured on frames where the object is present, and never
    /// followed by a region that jumps about.
    case motion
    /// Per block, moving prompts only: the measured speed is nearest to the prompt's (slowly, normal,
    /// quickly).
    case speed

    /// Judged per frame (the others per block).
    public var perFrame: Bool { self != .motion && self != .speed }

    public init(_ kind: SwitchKind) {
        switch kind {
        case .colour: self = .colour
        case .shape: self = .shape
        case .motion: self = .motion
        case .background: self = .background
        }
    }
}

/// How the object moved over consecutive frames (pixels per frame).
public struct MotionObservation: Sendable, Codable {
    /// Mean displacement per frame (on the torus): the net motion.
    public var meanVelocity: Point
    /// Mean absolute displacement per frame on each axis: motion along an axis, whichever way.
    public var meanAbsoluteVelocity: Point
    /// Mean length of the per-frame displacements.
    public var meanStep: Double
    /// Frame pairs measured.
    public var pairs: Int

    /// Measures consecutive frames' centroids (nil where no object was found); nil when fewer than
    /// `minimumPairs` consecutive pairs have both.
    public static func measure(_ centroids: [Point?], frameSize: Int, minimumPairs: Int = 4) -> MotionObservation? {
        var sum = Point(0, 0), abs = Point(0, 0), step = 0.0, n = 0
        for i in centroids.indices.dropFirst() {
            guard let a = centroids[i - 1], let b = centroids[i] else { continue }
            let d = b.wrappedOffset(from: a, size: Double(frameSize))
            sum = sum + d
            abs = abs + Point(Swift.abs(d.x), Swift.abs(d.y))
            step += d.length
            n += 1
        }
        guard n >= max(1, minimumPairs) else { return nil }
        let k = 1 / Double(n)
        return MotionObservation(meanVelocity: sum * k, meanAbsoluteVelocity: abs * k, meanStep: step * k, pairs: n)
    }
}

/// Compares what frames show with what a prompt says.
public struct SceneJudge: Sendable {
    public let geometry: SceneGeometry
    /// An object whose area is within this factor of the expected one is present.
    public var presenceFactor = 2.0
    /// Directions within this angle (degrees) agree; the 8 directions are 45 degrees apart.
    public var angleTolerance = 22.5

    public init(frameSize: Int) { geometry = SceneGeometry(frameSize: frameSize) }

    /// Below this net speed (px/frame) an object stays still: half the slowest prompt speed.
    public var stillSpeed: Double { geometry.slowestSpeed / 2 }
    /// Above this mean step (px/frame) the region jumps about rather than moves: three times the
    /// fastest prompt speed. No motion is followed then.
    public var flickerStep: Double { 3 * geometry.speed(.quickly) }

    /// Per-frame verdicts: true / false for each judged attribute (an empty prompt judges presence and
    /// background only).
    public func judge(_ o: FrameObservation, against scene: Scene) -> [Attribute: Bool] {
        var verdict: [Attribute: Bool] = [.background: o.background == scene.background]
        guard let expected = scene.object else {
            verdict[.presence] = o.objectColour == nil || o.area == 0
            return verdict
        }
        // Areas are those of the shape seen (the prompt's when none is recognised), so a wrong shape
        // fails the shape only, not the size as well.
        let shape = o.shape ?? expected.shape
        let ratio = Double(o.area) / geometry.area(shape, expected.size)
        verdict[.presence] = o.objectColour != nil && ratio >= 1 / presenceFactor && ratio <= presenceFactor
        verdict[.colour] = o.objectColour == expected.colour
        verdict[.shape] = o.shape == expected.shape
        verdict[.size] = o.area > 0 && Size.allCases.min { a, b in
            abs(log(Double(o.area) / geometry.area(shape, a))) < abs(log(Double(o.area) / geometry.area(shape, b)))
        } == expected.size
        return verdict
    }

    /// Per-block verdicts on motion (and speed, for moving prompts). A block where the object's motion
    /// cannot be measured (no object in most frames) or where it jumps about follows neither.
    public func judge(_ m: MotionObservation?, against scene: Scene) -> [Attribute: Bool] {
        guard let expected = scene.object else { return [:] }
        let moving = expected.motion != .staysStill
        guard let m, m.meanStep <= flickerStep else { return moving ? [.motion: false, .speed: false] : [.motion: false] }
        let v = m.meanVelocity, a = m.meanAbsoluteVelocity
        switch expected.motion.kind {
        case .still:
            return [.motion: v.length < stillSpeed]
        case .wrap:
            let d = expected.motion.direction
            return [.motion: v.length >= stillSpeed && angle(v, Point(d.x, d.y)) <= angleTolerance,
                    .speed: nearestSpeed(v.length) == expected.speed]
        case .bounce:
            // Reflections flip the sign, so the axis is read from the absolute displacements.
            let d = expected.motion.direction
            return [.motion: a.length >= stillSpeed && angle(a, Point(d.x, d.y)) <= angleTolerance,
                    .speed: nearestSpeed(a.length) == expected.speed]
        }
    }

    /// The prompt speed nearest (in ratio) to a measured one.
    func nearestSpeed(_ s: Double) -> Speed {
        guard s > 0 else { return .slowly }
        return Speed.allCases.min { abs(log(s / geometry.speed($0))) < abs(log(s / geometry.speed($1))) }!
    }

    /// Angle between two vectors, degrees.
    func angle(_ a: Point, _ b: Point) -> Double {
        let la = a.length, lb = b.length
        guard la > 0, lb > 0 else { return 180 }
        let c = min(max((a.x * b.x + a.y * b.y) / (la * lb), -1), 1)
        return acos(c) * 180 / .pi
    }
}
