/// A caption that is not a sentence of the data set's grammar.
public struct CaptionError: Error, Sendable, CustomStringConvertible {
    public var caption: String
    public var message: String
    public var description: String { "'\(caption)' is not a caption of the tiny model's grammar: \(message)" }
}

extension Scene {
    /// The caption the data set writes for this scene (training/data/scenes.py `caption`).
    public var caption: String {
        guard let o = object else { return "an empty \(background) background" }
        let size = o.size == .normal ? "" : "\(o.size.word) "
        let speed = o.speed == .normal || o.motion == .staysStill ? "" : " \(o.speed.word)"
        return "a \(size)\(o.colour.rawValue) \(o.shape.rawValue) \(o.motion.rawValue)\(speed) on a \(background) background"
    }

    /// Parses a caption of the grammar (case and runs of spaces do not matter; a final "." is allowed).
    public init(caption text: String) throws(CaptionError) {
        var words = Words(text)
        if words.take("an") {
            try words.expect("empty")
            let background = try words.background()
            try words.expectEnd()
            self.init(object: nil, background: background)
            return
        }
        try words.expect("a")
        var size = Size.normal
        if words.take("small") { size = .small } else if words.take("large") { size = .large }
        let colour = try words.colour(role: "the object's colour")
        guard let shape = words.next().flatMap(Shape.init(rawValue:)) else {
            throw words.error("expected a shape (\(Shape.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        words.advance()
        // Motions are several words; the longest that matches wins ("moves up and left" over "moves up").
        guard let motion = Motion.allCases.sorted(by: { $0.rawValue.count > $1.rawValue.count })
            .first(where: { words.take(phrase: $0.rawValue) }) else {
            throw words.error("expected a motion (moves <direction>, bounces ..., stays still)")
        }
        var speed = Speed.normal
        if words.take("slowly") { speed = .slowly } else if words.take("quickly") { speed = .quickly }
        try words.expect("on")
        try words.expect("a")
        let background = try words.background()
        try words.expectEnd()
        self.init(object: SceneObject(shape: shape, colour: colour, size: size, motion: motion, speed: speed),
                  background: background)
    }
}

/// A cursor over a caption's words.
private struct Words {
    let text: String
    let words: [String]
    var index = 0

    init(_ text: String) {
        self.text = text
        var trimmed = text.lowercased()
        while let last = trimmed.last, last == "." || last.isWhitespace { trimmed.removeLast() }
        words = trimmed.split(whereSeparator: \.isWhitespace).map(String.init)
    }

    func next() -> String? { index < words.count ? words[index] : nil }
    mutating func advance() { index += 1 }

    mutating func take(_ word: String) -> Bool {
        guard next() == word else { return false }
        index += 1
        return true
    }

    mutating func take(phrase: String) -> Bool {
        let parts = phrase.split(separator: " ").map(String.init)
        guard index + parts.count <= words.count, Array(words[index..<(index + parts.count)]) == parts else { return false }
        index += parts.count
        return true
    }

    func error(_ message: String) -> CaptionError {
        let at = next().map { "'\($0)' (word \(index + 1))" } ?? "the end"
        return CaptionError(caption: text, message: "\(message), found \(at)")
    }

    mutating func expect(_ word: String) throws(CaptionError) {
        guard take(word) else { throw error("expected '\(word)'") }
    }

    mutating func expectEnd() throws(CaptionError) {
        guard next() == nil else { throw error("expected the end of the caption") }
    }

    mutating func colour(role: String) throws(CaptionError) -> SceneColour {
        guard let c = next().flatMap(SceneColour.init(rawValue:)) else {
            throw error("expected \(role) (\(SceneColour.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        index += 1
        return c
    }

    mutating func background() throws(CaptionError) -> Background {
        let top = try colour(role: "a background colour")
        let bottom = take("and") ? try colour(role: "the bottom half's colour") : top
        try expect("background")
        return Background(top: top, bottom: bottom)
    }
}
