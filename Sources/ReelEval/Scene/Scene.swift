/// What a caption of the tiny model's data set says (training/data/scenes.py): one object on a plain
/// or two-tone background, or an empty background.
///
/// Captions come from a small grammar:
///
///     a [small|large] <colour> <shape> <motion> [slowly|quickly] on a <colour> [and <colour>] background
///     an empty <colour> [and <colour>] background
///
/// e.g. "a large red circle moves left quickly on a blue background". Two-tone backgrounds name the top
/// half, then the bottom half.
public struct Scene: Sendable, Hashable, Codable {
    public var object: SceneObject?
    public var background: Background

    public init(object: SceneObject?, background: Background) {
        self.object = object
        self.background = background
    }
}

/// The object of a scene.
public struct SceneObject: Sendable, Hashable, Codable {
    public var shape: Shape
    public var colour: SceneColour
    public var size: Size
    public var motion: Motion
    /// Ignored by `.staysStill`.
    public var speed: Speed

    public init(shape: Shape, colour: SceneColour, size: Size = .normal, motion: Motion, speed: Speed = .normal) {
        self.shape = shape; self.colour = colour; self.size = size; self.motion = motion; self.speed = speed
    }
}

/// A plain background has the same colour in both halves.
public struct Background: Sendable, Hashable, Codable, CustomStringConvertible {
    public var top: SceneColour
    public var bottom: SceneColour

    public init(top: SceneColour, bottom: SceneColour) { self.top = top; self.bottom = bottom }
    public static func plain(_ c: SceneColour) -> Background { Background(top: c, bottom: c) }

    public var isPlain: Bool { top == bottom }
    public func contains(_ c: SceneColour) -> Bool { top == c || bottom == c }
    /// "blue" or "white and black".
    public var description: String { isPlain ? top.rawValue : "\(top.rawValue) and \(bottom.rawValue)" }
}

public enum Shape: String, CaseIterable, Sendable, Codable {
    case circle, square, triangle, diamond, cross
}

public enum Size: String, CaseIterable, Sendable, Codable {
    case small, normal, large

    /// Half-extent of the object as a fraction of the frame size.
    public var fraction: Double {
        switch self {
        case .small: 0.08
        case .normal: 0.125
        case .large: 0.19
        }
    }

    /// The caption's word ("" for the unnamed normal size).
    public var word: String { self == .normal ? "" : rawValue }
}

public enum Speed: String, CaseIterable, Sendable, Codable {
    case slowly, normal, quickly

    /// Pixels per video frame at a 128-pixel frame (scaled with the frame size).
    public var pixelsPerFrameAt128: Double {
        switch self {
        case .slowly: 0.75
        case .normal: 1.5
        case .quickly: 2.5
        }
    }

    public var word: String { self == .normal ? "" : rawValue }
}

/// The 12 motions. "moves ..." wraps around the frame edges (the direction always holds), "bounces ..."
/// reflects off the walls, "stays still" does not move.
public enum Motion: String, CaseIterable, Sendable, Codable {
    case left = "moves left", right = "moves right", up = "moves up", down = "moves down"
    case upLeft = "moves up and left", upRight = "moves up and right"
    case downLeft = "moves down and left", downRight = "moves down and right"
    case bouncesLeftRight = "bounces left and right", bouncesUpDown = "bounces up and down"
    case bouncesAround = "bounces around"
    case staysStill = "stays still"

    public enum Kind: String, Sendable, Codable { case wrap, bounce, still }

    public var kind: Kind {
        switch self {
        case .bouncesLeftRight, .bouncesUpDown, .bouncesAround: .bounce
        case .staysStill: .still
        default: .wrap
        }
    }

    /// Unit direction (x right, y down); a bounce's starting direction; zero when still.
    public var direction: (x: Double, y: Double) {
        let d = (0.5 as Double).squareRoot()
        switch self {
        case .left: return (-1, 0)
        case .right, .bouncesLeftRight: return (1, 0)
        case .up: return (0, -1)
        case .down, .bouncesUpDown: return (0, 1)
        case .upLeft: return (-d, -d)
        case .upRight: return (d, -d)
        case .downLeft: return (-d, d)
        case .downRight, .bouncesAround: return (d, d)
        case .staysStill: return (0, 0)
        }
    }
}
