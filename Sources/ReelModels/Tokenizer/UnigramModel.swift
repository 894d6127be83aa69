/// A unigram language model over pieces, and the Viterbi search that segments text with it.
///
/// The two libraries Reel matches differ in small ways, kept here as `Rules`:
/// - SentencePiece (`unigram_model.cc`, `EncodeOptimized`) keeps scores and path sums in `float`;
///   its trie holds normal, user-defined and unused pieces (unused ones never match); a user-defined
///   piece scores `length * max_score - 0.1` in double, where `max_score` starts at `FLT_MIN`;
///   `min_score` and `max_score` are taken over normal pieces only.
/// - HF tokenizers (`models/unigram/model.rs`, `encode_optimized`) keeps them in `f64`, its trie
///   holds every vocabulary entry (special tokens and `<0xNN>` byte pieces included), and
///   `min_score` is over all entries.
/// Both give a character with no single-character piece the score `min_score - 10` as unknown,
/// and both fuse consecutive unknown pieces into one.
struct UnigramModel: Sendable {
    /// Which library's rules to follow.
    enum Rules: Sendable { case sentencePiece, huggingFace }

    /// The kind of a piece (SentencePiece `ModelProto.SentencePiece.Type`).
    enum PieceType: Int32, Sendable { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

    let rules: Rules
    let pieces: [String]
    let scores: [Double]
    let types: [PieceType]
    let unkId: Int32
    let byteFallback: Bool
    /// Id of the `<0xNN>` piece for each byte value, or -1.
    let byteIds: [Int32]
    /// Piece bytes to id. Keyed by bytes, not `String`: Swift's string equality is canonical
    /// equivalence, and "ハ\u{309A}" must not find the piece "パ".
    let pieceToId: [[UInt8]: Int32]
    private let trie: PieceTrie
    private let unkScore: Double
    private let maxNormalScore: Float

    init(rules: Rules, pieces: [String], scores: [Double], types: [PieceType], unkId: Int32, byteFallback: Bool) throws {
        guard !pieces.isEmpty else { throw ReelTokenizerError.malformed("the vocabulary is empty") }
        guard pieces.count == scores.count, pieces.count == types.count else {
            throw ReelTokenizerError.malformed("vocabulary has \(pieces.count) pieces but \(scores.count) scores")
        }
        guard pieces.count < Int(Int32.max) else { throw ReelTokenizerError.malformed("vocabulary too large") }
        guard unkId >= 0, Int(unkId) < pieces.count else {
            throw ReelTokenizerError.malformed("unk id \(unkId) is outside the vocabulary of \(pieces.count) pieces")
        }
        self.rules = rules
        self.pieces = pieces
        self.scores = scores
        self.types = types
        self.unkId = unkId
        self.byteFallback = byteFallback

        var pieceToId: [[UInt8]: Int32] = [:]
        var seenNormal = Set<[UInt8]>(), seenReserved = Set<[UInt8]>()
        pieceToId.reserveCapacity(pieces.count)
        var entries: [(bytes: [UInt8], id: Int32)] = []
        entries.reserveCapacity(pieces.count)
        var byteIds = [Int32](repeating: -1, count: 256)
        var minScore = Double.infinity
        var minNormal = Float.greatestFiniteMagnitude
        var maxNormal = Float.leastNormalMagnitude  // FLT_MIN, as sentencepiece initialises it
        for (i, piece) in pieces.enumerated() {
            let id = Int32(i)
            let bytes = Array(piece.utf8)
            if rules == .sentencePiece {
                // sentencepiece refuses a piece defined twice among the normal, user-defined and unused
                // pieces, or twice among the others (control, unknown, byte).
                let reserved = ![.normal, .userDefined, .unused].contains(types[i])
                guard reserved ? seenReserved.insert(bytes).inserted : seenNormal.insert(bytes).inserted else {
                    throw ReelTokenizerError.malformed("piece \(piece.debugDescription) is defined twice")
                }
            }
            pieceToId[bytes] = id  // tokenizers: the last entry wins
            // tokenizers looks byte pieces up by name; sentencepiece takes only pieces of type BYTE.
            if let b = Self.byteValue(piece), rules == .huggingFace || types[i] == .byte { byteIds[b] = id }
            switch rules {
            case .huggingFace:
                entries.append((bytes, id))
                minScore = min(minScore, scores[i])
            case .sentencePiece:
                switch types[i] {
                case .normal, .userDefined:
                    entries.append((bytes, id))
                case .unused, .unknown, .control, .byte:
                    break
                }
                if types[i] == .normal {
                    minNormal = min(minNormal, Float(scores[i]))
                    maxNormal = max(maxNormal, Float(scores[i]))
                }
            }
        }
        self.pieceToId = pieceToId
        self.byteIds = byteIds
        self.trie = PieceTrie(entries)
        self.maxNormalScore = maxNormal
        switch rules {
        case .huggingFace: unkScore = minScore - 10.0
        case .sentencePiece: unkScore = Double(minNormal - Float(10.0))  // kUnkPenalty is a float
        }
    }

    /// The byte value of a `<0xNN>` piece.
    static func byteValue(_ piece: String) -> Int? {
        let u = Array(piece.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"),
              u[5] == UInt8(ascii: ">"), let hi = hexDigit(u[3]), let lo = hexDigit(u[4]) else { return nil }
        return hi * 16 + lo
    }

    private static func hexDigit(_ c: UInt8) -> Int? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(c - UInt8(ascii: "0"))
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(c - UInt8(ascii: "A")) + 10
        default: nil  // both libraries write upper-case hex
        }
    }

    /// Working memory of the lattice, reused across the words of one text.
    struct Lattice {
        var best: [Double] = []
        var startsAt: [Int32] = []
        var nodeId: [Int32] = []
        var spans: [(start: Int, end: Int, id: Int32)] = []

        mutating func reset(_ n: Int) {
            if best.count < n + 1 {
                best = [Double](repeating: 0, count: n + 1)
                startsAt = [Int32](repeating: -1, count: n + 1)
                nodeId = [Int32](repeating: -1, count: n + 1)
            } else {
                for i in 0...n { best[i] = 0; startsAt[i] = -1; nodeId[i] = -1 }
            }
            spans.removeAll(keepingCapacity: true)
        }
    }

    /// Segments `text` (already normalized, valid UTF-8) and appends the ids to `ids`.
    func encode(_ text: UnsafeBufferPointer<UInt8>, into ids: inout [Int32]) {
        var lattice = Lattice()
        encode(text, into: &ids, lattice: &lattice)
    }

    /// Segments `text` with `lattice` as working memory.
    func encode(_ text: UnsafeBufferPointer<UInt8>, into ids: inout [Int32], lattice: inout Lattice) {
        let n = text.count
        if n == 0 { return }
        lattice.reset(n)
        encodeLattice(text, &ids, &lattice.best, &lattice.startsAt, &lattice.nodeId, &lattice.spans)
    }

    private func encodeLattice(_ text: UnsafeBufferPointer<UInt8>, _ ids: inout [Int32], _ best: inout [Double],
                               _ startsAt: inout [Int32], _ nodeId: inout [Int32],
                               _ spans: inout [(start: Int, end: Int, id: Int32)]) {
        let n = text.count
        let spm = rules == .sentencePiece
        var start = 0
        while start < n {
            let till = best[start]
            let charLength = min(Self.utf8Length(text[start]), n - start)
            var hasSingle = false
            trie.forEachPrefix(text, from: start, end: n) { id, end in
                let candidate: Double
                if spm {
                    if types[Int(id)] == .userDefined {
                        // double arithmetic in sentencepiece: `length * max_score_ - 0.1`
                        candidate = Double(Float(end - start) * maxNormalScore) - 0.1 + till
                    } else {
                        candidate = Double(Float(scores[Int(id)]) + Float(till))
                    }
                } else {
                    candidate = scores[Int(id)] + till
                }
                if startsAt[end] < 0 || candidate > best[end] {
                    best[end] = spm ? Double(Float(candidate)) : candidate
                    startsAt[end] = Int32(start)
                    nodeId[end] = id
                }
                if end - start == charLength { hasSingle = true }
            }
            if !hasSingle {
                let end = start + charLength
                let candidate = spm ? Double(Float(unkScore) + Float(till)) : unkScore + till
                if startsAt[end] < 0 || candidate > best[end] {
                    best[end] = candidate
                    startsAt[end] = Int32(start)
                    nodeId[end] = unkId
                }
            }
            start += charLength
        }
        // Backtrack, fusing runs of unknown pieces.
        var end = n
        while end > 0 {
            let s = Int(startsAt[end])
            let id = nodeId[end]
            if id == unkId, let last = spans.last, last.id == unkId, last.start == end {
                spans[spans.count - 1].start = s
            } else {
                spans.append((s, end, id))
            }
            end = s
        }
        for span in spans.reversed() {
            guard span.id == unkId else { ids.append(span.id); continue }
            let bytes = UnsafeBufferPointer(rebasing: text[span.start..<span.end])
            if rules == .huggingFace, let id = pieceToId[Array(bytes)] {
                ids.append(id)  // tokenizers looks the fused string up again
                continue
            }
            if byteFallback, bytes.allSatisfy({ byteIds[Int($0)] >= 0 }) {
                for b in bytes { ids.append(byteIds[Int(b)]) }
            } else {
                ids.append(unkId)
            }
        }
    }

    /// The length of the UTF-8 sequence a lead byte starts (1 for a stray continuation byte).
    @inline(__always)
    static func utf8Length(_ lead: UInt8) -> Int {
        if lead < 0x80 { return 1 }
        if lead >= 0xF0 { return 4 }
        if lead >= 0xE0 { return 3 }
        if lead >= 0xC0 { return 2 }
        return 1
    }
}
