import Foundation

/// A point or vector in pixels: x to the right, y down. Pixel (i, j) covers [i, i+1) x [j, j+1).
public struct Point: Sendable, Hashable, Codable {
    public var x: Double, y: Double
    public init(_ x: Double, _ y: Double) { self.x = x; self.y = y }
    public static func + (a: Point, b: Point) -> Point { Point(a.x + b.x, a.y + b.y) }
    public static func - (a: Point, b: Point) -> Point { Point(a.x - b.x, a.y - b.y) }
    public static func * (a: Point, s: Double) -> Point { Point(a.x * s, a.y * s) }
    public var length: Double { (x * x + y * y).squareRoot() }

    /// The shortest displacement from `other` to `self` on a torus of side `size`.
    public func wrappedOffset(from other: Point, size: Double) -> Point {
        func wrap(_ d: Double) -> Double { d - size * (d / size).rounded() }
        return Point(wrap(x - other.x), wrap(y - other.y))
    }
}

/// Sizes, speeds and areas of a scene's object at a frame size (training/data/scenes.py and render.py:
/// radius = size fraction x frame; speed = px/frame at 128 scaled with the frame).
public struct SceneGeometry: Sendable {
    public let frameSize: Int
    public init(frameSize: Int) { self.frameSize = frameSize }

    var scale: Double { Double(frameSize) / 128 }

    public func radius(_ size: Size) -> Double { size.fraction * Double(frameSize) }
    public func speed(_ speed: Speed) -> Double { speed.pixelsPerFrameAt128 * scale }

    /// The canonical velocity (px/frame) of an object's motion.
    public func velocity(_ o: SceneObject) -> Point {
        guard o.motion != .staysStill else { return Point(0, 0) }
        let d = o.motion.direction, s = speed(o.speed)
        return Point(d.x * s, d.y * s)
    }

    /// The drawn area of an object, in pixels.
    public func area(_ shape: Shape, _ size: Size) -> Double { shape.areaFactor * radius(size) * radius(size) }

    /// The slowest speed a moving object has (px/frame).
    public var slowestSpeed: Double { speed(.slowly) }
}

extension Shape {
    /// Area / r^2 of the shape of half-extent r: a disc; a square of side 2r; a diamond of diagonal 2r;
    /// a triangle with apex (0, -r) and base corners (+-r, 0.8r); a cross of two 2r x 0.7r bars.
    public var areaFactor: Double {
        switch self {
        case .circle: .pi
        case .square: 4
        case .diamond: 2
        case .triangle: 1.8
        case .cross: 2.31
        }
    }

    /// Where the shape's centroid lies below its reference centre, as a fraction of r (the triangle's
    /// centroid is a third of the way up from its base: (-1 + 0.8 + 0.8) / 3).
    public var centroidDrop: Double { self == .triangle ? 0.2 : 0 }
}

/// What a frame of a timeline shows: the object (nil for an empty background) and the background.
public struct FrameTruth: Sendable {
    public var scene: Scene
    /// The object's reference centre (the shape's centre; the triangle's centroid is below it).
    public var centre: Point
    /// Pixels per frame.
    public var velocity: Point
    public var radius: Double
    /// Index of the timeline segment (the prompt) this frame belongs to.
    public var segment: Int

    /// The centre of the object's pixels.
    public var centroid: Point {
        Point(centre.x, centre.y + (scene.object?.shape.centroidDrop ?? 0) * radius)
    }
}

/// A prompt timeline and the motion it implies, in closed form (training/data/scenes.py `simulate`):
/// the object starts at the frame centre, each later prompt starts at a video frame and the object
/// carries on from where it is. When a prompt keeps the previous motion, a bounce keeps the direction it
/// had reached (only the speed may change). Frame 10,000 costs what frame 0 does.
public struct SceneTimeline: Sendable {
    public struct Segment: Sendable {
        /// First video frame of this prompt.
        public var start: Int
        public var scene: Scene
        public init(start: Int, scene: Scene) { self.start = start; self.scene = scene }
    }

    public let segments: [Segment]
    public let geometry: SceneGeometry
    /// Position and velocity at each segment's start.
    private let entries: [(position: Point, velocity: Point)]

    public init(_ segments: [Segment], frameSize: Int, start: Point? = nil) {
        precondition(!segments.isEmpty && segments[0].start == 0, "a timeline starts at frame 0")
        self.segments = segments
        geometry = SceneGeometry(frameSize: frameSize)
        let s = Double(frameSize)
        var position = start ?? Point(s / 2, s / 2)
        var previous: (motion: Motion, velocity: Point)?
        var entries: [(Point, Point)] = []
        for (i, seg) in segments.enumerated() {
            var v = Point(0, 0)
            if let o = seg.scene.object {
                v = geometry.velocity(o)
                if let previous, previous.motion == o.motion {
                    // The motion goes on: keep the direction it had reached, take the (new) speed.
                    func carry(_ old: Double, _ new: Double) -> Double { old != 0 ? (old > 0 ? abs(new) : -abs(new)) : new }
                    v = Point(carry(previous.velocity.x, v.x), carry(previous.velocity.y, v.y))
                }
            }
            entries.append((position, v))
            if i + 1 < segments.count, let o = seg.scene.object {
                let (p, nv) = Self.advance(o.motion.kind, from: position, velocity: v, radius: geometry.radius(o.size),
                                           size: s, frames: Double(segments[i + 1].start - seg.start))
                position = p
                previous = (o.motion, nv)
            }
        }
        self.entries = entries
    }

    /// A timeline of one prompt.
    public init(_ scene: Scene, frameSize: Int) {
        self.init([Segment(start: 0, scene: scene)], frameSize: frameSize)
    }

    /// The segment (prompt) index of a video frame.
    public func segmentIndex(at frame: Int) -> Int {
        var i = 0
        while i + 1 < segments.count && segments[i + 1].start <= frame { i += 1 }
        return i
    }

    public func truth(at frame: Int) -> FrameTruth {
        let i = segmentIndex(at: frame)
        let seg = segments[i], entry = entries[i]
        guard let o = seg.scene.object else {
            return FrameTruth(scene: seg.scene, centre: entry.position, velocity: Point(0, 0), radius: 0, segment: i)
        }
        let r = geometry.radius(o.size)
        let (p, v) = Self.advance(o.motion.kind, from: entry.position, velocity: entry.velocity, radius: r,
                                  size: Double(geometry.frameSize), frames: Double(frame - seg.start))
        return FrameTruth(scene: seg.scene, centre: p, velocity: v, radius: r, segment: i)
    }

    /// Position and velocity `t` frames after (p, v), each axis on its own.
    static func advance(_ kind: Motion.Kind, from p: Point, velocity v: Point, radius r: Double, size: Double,
                        frames t: Double) -> (Point, Point) {
        let x = axis(kind, p.x, v.x, r, size, t), y = axis(kind, p.y, v.y, r, size, t)
        return (Point(x.p, y.p), Point(x.v, y.v))
    }

    private static func axis(_ kind: Motion.Kind, _ p0: Double, _ v0: Double, _ r: Double, _ size: Double, _ t: Double)
        -> (p: Double, v: Double) {
        if kind == .still || v0 == 0 { return (p0, 0) }
        if kind == .wrap { return (positiveRemainder(p0 + v0 * t, size), v0) }
        // A bounce between r and size - r: unfold the reflections onto a circle of length 2 * span.
        let span = size - 2 * r
        guard span > 0 else { return (p0, 0) }
        let speed = abs(v0)
        let u0 = v0 > 0 ? p0 - r : 2 * span - (p0 - r)
        let m = positiveRemainder(u0 + speed * t, 2 * span)
        return (r + (m <= span ? m : 2 * span - m), m < span ? speed : -speed)
    }
}

func positiveRemainder(_ a: Double, _ m: Double) -> Double {
    let r = a.truncatingRemainder(dividingBy: m)
    return r < 0 ? r + m : r
}
