/// SplitMix64: a small, fast, seedable generator; the same seed gives the same prompts on every machine.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The attribute a prompt switch changes.
public enum SwitchKind: String, CaseIterable, Sendable, Codable {
    case colour, shape, motion, background
}

/// Draws scenes from the data set's grammar, deterministically by seed, with the data set's rules
/// (training/data/scenes.py `sample_attributes`, `sample_switch`): a background never uses the object's
/// colour; two-tone backgrounds 35% of the time; a switch changes one attribute, and a switch to a bounce
/// only happens where the object is inside the bounce's range.
public struct PromptSampler: Sendable {
    public var rng: SplitMix64
    public var twoToneProbability = 0.35

    public init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    public mutating func scene() -> Scene {
        let colour = pick(SceneColour.allCases)
        let object = SceneObject(shape: pick(Shape.allCases), colour: colour, size: pick(Size.allCases),
                                 motion: pick(Motion.allCases), speed: pick(Speed.allCases))
        return Scene(object: object, background: background(avoiding: colour))
    }

    /// A scene that differs from `scene` in the attribute `kind`, valid for an object at `centre`
    /// (nil when none is: a bounce needs the object inside its range).
    public mutating func switched(_ scene: Scene, kind: SwitchKind, centre: Point, geometry: SceneGeometry) -> Scene? {
        guard let o = scene.object else { return nil }
        for _ in 0..<100 {
            var next = scene
            switch kind {
            case .colour:
                next.object?.colour = pick(SceneColour.allCases.filter { $0 != o.colour && !scene.background.contains($0) })
            case .shape:
                next.object?.shape = pick(Shape.allCases.filter { $0 != o.shape })
            case .motion:
                var m = o.motion, s = o.speed
                while (m == o.motion && s == o.speed) || (m == .staysStill && o.motion == .staysStill) {
                    m = pick(Motion.allCases)
                    s = pick(Speed.allCases)
                }
                next.object?.motion = m
                next.object?.speed = s
            case .background:
                next.background = background(avoiding: o.colour)
                if next.background == scene.background { continue }
            }
            if let n = next.object, Self.inBounceRange(n, centre: centre, geometry: geometry) { return next }
        }
        return nil
    }

    /// A bouncing object must lie between r and size - r along each axis it bounces on.
    static func inBounceRange(_ o: SceneObject, centre: Point, geometry: SceneGeometry) -> Bool {
        guard o.motion.kind == .bounce else { return true }
        let r = geometry.radius(o.size), s = Double(geometry.frameSize), d = o.motion.direction
        return (d.x == 0 || (r...(s - r)).contains(centre.x)) && (d.y == 0 || (r...(s - r)).contains(centre.y))
    }

    private mutating func background(avoiding colour: SceneColour) -> Background {
        let choices = SceneColour.allCases.filter { $0 != colour }
        let top = pick(choices)
        if Double.random(in: 0..<1, using: &rng) < twoToneProbability {
            return Background(top: top, bottom: pick(choices.filter { $0 != top }))
        }
        return .plain(top)
    }

    private mutating func pick<T>(_ options: [T]) -> T { options[Int.random(in: 0..<options.count, using: &rng)] }
}
