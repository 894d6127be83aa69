/// An RGB colour, 8 bits a channel.
public struct RGB: Sendable, Hashable, Codable {
    public var r: UInt8, g: UInt8, b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { self.r = r; self.g = g; self.b = b }

    /// Squared Euclidean distance in RGB.
    @inlinable func distanceSquared(_ r2: Int, _ g2: Int, _ b2: Int) -> Int {
        let dr = Int(r) - r2, dg = Int(g) - g2, db = Int(b) - b2
        return dr * dr + dg * dg + db * db
    }

    public func distance(to other: RGB) -> Double {
        Double(distanceSquared(Int(other.r), Int(other.g), Int(other.b))).squareRoot()
    }
}

/// The 8 colours of the tiny model's data set (training/data/scenes.py `COLOURS`), used for objects
/// and backgrounds alike. Their closest pair, yellow and orange, is 76 RGB units apart.
public enum SceneColour: String, CaseIterable, Sendable, Codable {
    case red, green, blue, yellow, orange, purple, white, black

    public var rgb: RGB {
        switch self {
        case .red: RGB(220, 40, 40)
        case .green: RGB(40, 170, 60)
        case .blue: RGB(40, 80, 220)
        case .yellow: RGB(240, 215, 40)
        case .orange: RGB(245, 140, 30)
        case .purple: RGB(140, 60, 190)
        case .white: RGB(245, 245, 245)
        case .black: RGB(20, 20, 20)
        }
    }

    /// The palette colour nearest to (r, g, b), and the squared distance to it.
    @inlinable static func nearest(_ r: Int, _ g: Int, _ b: Int) -> (colour: SceneColour, distanceSquared: Int) {
        var best = SceneColour.red, bestD = Int.max
        for c in allCases {
            let d = c.rgb.distanceSquared(r, g, b)
            if d < bestD { best = c; bestD = d }
        }
        return (best, bestD)
    }

    public static func nearest(to rgb: RGB) -> SceneColour { nearest(Int(rgb.r), Int(rgb.g), Int(rgb.b)).colour }
}
