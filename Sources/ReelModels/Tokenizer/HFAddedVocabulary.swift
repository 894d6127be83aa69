/// The `added_tokens` of a `tokenizer.json` (tokenizers `added_vocabulary.rs`): tokens matched in
/// the text before the model runs, leftmost-longest, on the raw text (`normalized: false`) or on
/// the normalized text (`normalized: true`).
struct HFAddedVocabulary: Sendable {
    struct Token: Sendable {
        var id: Int32
        var content: [UInt8]
        /// What is matched: the content, or for a `normalized` token the content normalized.
        var pattern: [UInt8]
        var special: Bool
        var normalized: Bool
        var lstrip: Bool
        var rstrip: Bool
        var singleWord: Bool
    }

    let tokens: [Token]
    private let raw: [[Int]]         // per first byte: indices of raw-matched tokens
    private let normalized: [[Int]]  // per first byte: indices of normalized-matched tokens

    /// Reads `added_tokens`. The ids are assigned as `tokenizers` assigns them when it loads the
    /// file (`AddedVocabulary::add_tokens`), not taken from the `id` fields: a token the model's
    /// vocabulary holds gets its id there; any other gets the next id past the vocabulary and the
    /// added tokens so far.
    init(json: [[String: Any]], modelId: ([UInt8]) -> Int32?, vocabularySize: Int, normalizer: HFNormalizer?) throws {
        var tokens: [Token] = []
        var assigned: [[UInt8]: Int32] = [:]
        var maxAssigned: Int32 = -1
        for entry in json {
            guard let content = entry["content"] as? String else {
                throw ReelTokenizerError.malformed("an added token lacks `content`")
            }
            let bytes = Array(content.utf8)
            if bytes.isEmpty { continue }
            let id: Int32
            if let existing = assigned[bytes] ?? modelId(bytes) {
                id = existing
            } else {
                id = maxAssigned >= Int32(vocabularySize) ? maxAssigned + 1 : Int32(vocabularySize)
            }
            assigned[bytes] = id
            maxAssigned = max(maxAssigned, id)
            let special = entry["special"] as? Bool ?? false
            let normalized = entry["normalized"] as? Bool ?? !special
            let pattern = normalized ? Array((normalizer?.normalize(content) ?? content).utf8) : bytes
            tokens.append(Token(id: id, content: bytes, pattern: pattern, special: special, normalized: normalized,
                                lstrip: entry["lstrip"] as? Bool ?? false, rstrip: entry["rstrip"] as? Bool ?? false,
                                singleWord: entry["single_word"] as? Bool ?? false))
        }
        self.tokens = tokens
        var raw = [[Int]](repeating: [], count: 256)
        var normalized = [[Int]](repeating: [], count: 256)
        for (i, t) in tokens.enumerated() where !t.pattern.isEmpty {
            if t.normalized { normalized[Int(t.pattern[0])].append(i) } else { raw[Int(t.pattern[0])].append(i) }
        }
        self.raw = raw
        self.normalized = normalized
    }

    var hasNormalizedTokens: Bool { normalized.contains { !$0.isEmpty } }

    /// A stretch of text: either an added token's id, or text for the normalizer and model.
    enum Segment {
        case token(Int32)
        case text(String, atStart: Bool)
    }

    /// Splits `text` around the added tokens of one kind.
    func split(_ text: String, normalizedTokens: Bool, atStart: Bool) -> [Segment] {
        let table = normalizedTokens ? normalized : raw
        let bytes = Array(text.utf8)
        var segments: [Segment] = []
        var textStart = 0
        var i = 0
        while i < bytes.count {
            var best: (token: Int, end: Int)?
            for k in table[Int(bytes[i])] {
                let t = tokens[k]
                guard bytes.count - i >= t.pattern.count, bytes[i..<(i + t.pattern.count)].elementsEqual(t.pattern) else { continue }
                if t.singleWord && !Self.isWordBoundary(bytes, i, i + t.pattern.count) { continue }
                if best == nil || t.pattern.count > tokens[best!.token].pattern.count { best = (k, i + t.pattern.count) }
            }
            guard let match = best else { i += 1; continue }
            let t = tokens[match.token]
            var start = i
            var end = match.end
            if t.lstrip { while start > textStart, Self.isWhitespaceByteBefore(bytes, start) { start = Self.previousScalarStart(bytes, start) } }
            if t.rstrip { while end < bytes.count, let n = Self.whitespaceLengthAt(bytes, end) { end += n } }
            if start > textStart {
                segments.append(.text(String(decoding: bytes[textStart..<start], as: UTF8.self), atStart: atStart && textStart == 0))
            }
            segments.append(.token(t.id))
            textStart = end
            i = end
        }
        if textStart < bytes.count {
            segments.append(.text(String(decoding: bytes[textStart...], as: UTF8.self), atStart: atStart && textStart == 0))
        }
        return segments
    }

    private static func scalar(_ bytes: [UInt8], at i: Int) -> (Unicode.Scalar, Int)? {
        let n = UTF8Repair.wellFormedLength(bytes, at: i)
        guard n > 0, let s = String(decoding: bytes[i..<(i + n)], as: UTF8.self).unicodeScalars.first else { return nil }
        return (s, n)
    }

    private static func previousScalarStart(_ bytes: [UInt8], _ i: Int) -> Int {
        var j = i - 1
        while j > 0, bytes[j] & 0xC0 == 0x80 { j -= 1 }
        return j
    }

    private static func isWhitespaceByteBefore(_ bytes: [UInt8], _ i: Int) -> Bool {
        guard i > 0, let (s, _) = scalar(bytes, at: previousScalarStart(bytes, i)) else { return false }
        return s.properties.isWhitespace
    }

    private static func whitespaceLengthAt(_ bytes: [UInt8], _ i: Int) -> Int? {
        guard let (s, n) = scalar(bytes, at: i), s.properties.isWhitespace else { return nil }
        return n
    }

    /// single_word: the match must not touch a word character (alphanumeric or `_`) on either side.
    private static func isWordBoundary(_ bytes: [UInt8], _ start: Int, _ end: Int) -> Bool {
        func isWord(_ s: Unicode.Scalar) -> Bool { s.properties.isAlphabetic || s.properties.numericType != nil || s == "_" }
        if start > 0, let (s, _) = scalar(bytes, at: previousScalarStart(bytes, start)), isWord(s) { return false }
        if end < bytes.count, let (s, _) = scalar(bytes, at: end), isWord(s) { return false }
        return true
    }
}
