/// A SentencePiece unigram model read from `spiece.model`, encoding and decoding exactly as the
/// `sentencepiece` library does.
///
/// File format: a serialized `sentencepiece.ModelProto` (sentencepiece_model.proto). Fields read:
/// - `ModelProto`: 1 `pieces` (repeated), 2 `trainer_spec`, 3 `normalizer_spec`.
/// - `SentencePiece`: 1 `piece` (string), 2 `score` (float), 3 `type` (enum, default NORMAL = 1).
/// - `TrainerSpec`: 3 `model_type` (UNIGRAM = 1, the default), 24 `treat_whitespace_as_suffix`,
///   35 `byte_fallback`, 40 `unk_id` (default 0), 41 `bos_id` (1), 42 `eos_id` (2), 43 `pad_id` (-1),
///   44 `unk_surface` (default " \u{2047} ").
/// - `NormalizerSpec`: 2 `precompiled_charsmap`, 3 `add_dummy_prefix`, 4 `remove_extra_whitespaces`,
///   5 `escape_whitespaces` (all three default true).
/// Unknown fields are skipped.
struct SentencePieceModel: Sendable {
    let model: UnigramModel
    let charsMap: PrecompiledCharsMap?
    let addDummyPrefix: Bool
    let removeExtraWhitespaces: Bool
    let escapeWhitespaces: Bool
    let unkSurface: String
    let eosId: Int32?
    let padId: Int32?
    let bosId: Int32?
    /// The user-defined symbols, which pass through normalization untouched.
    private let userSymbols: PieceTrie?

    init(bytes: [UInt8]) throws {
        var pieces: [String] = []
        var scores: [Double] = []
        var types: [UnigramModel.PieceType] = []
        var trainer: ArraySlice<UInt8>?
        var normalizer: ArraySlice<UInt8>?
        do {
            var reader = ProtobufReader(bytes[...])
            while let (field, value) = try reader.next() {
                switch field {
                case 1:
                    guard let data = value.data else { throw ReelTokenizerError.malformed("ModelProto.pieces is not a message") }
                    var piece: String?
                    var score: Float = 0
                    var type = UnigramModel.PieceType.normal
                    var r = ProtobufReader(data)
                    while let (f, v) = try r.next() {
                        switch f {
                        case 1:
                            guard let s = v.string else { throw ReelTokenizerError.malformed("piece \(pieces.count) is not valid UTF-8") }
                            piece = s
                        case 2:
                            guard let s = v.float else { throw ReelTokenizerError.malformed("piece \(pieces.count) has a non-float score") }
                            score = s
                        case 3:
                            guard let raw = v.int32, let t = UnigramModel.PieceType(rawValue: raw) else {
                                throw ReelTokenizerError.malformed("piece \(pieces.count) has an unknown type")
                            }
                            type = t
                        default: break
                        }
                    }
                    guard let piece, !piece.isEmpty else { throw ReelTokenizerError.malformed("piece \(pieces.count) is empty") }
                    pieces.append(piece)
                    scores.append(Double(score))
                    types.append(type)
                case 2: trainer = value.data
                case 3: normalizer = value.data
                default: break
                }
            }
        } catch let error as ProtobufReader.Error {
            throw ReelTokenizerError.malformed("\(error)")
        }

        var modelType: Int32 = 1, byteFallback = false, whitespaceAsSuffix = false
        var unkId: Int32 = 0, bosId: Int32 = 1, eosId: Int32 = 2, padId: Int32 = -1
        var unkSurface = " \u{2047} "
        if let trainer {
            var r = ProtobufReader(trainer)
            while let (f, v) = try Self.wrap({ try r.next() }) {
                switch f {
                case 3: modelType = v.int32 ?? modelType
                case 24: whitespaceAsSuffix = v.bool ?? false
                case 35: byteFallback = v.bool ?? false
                case 40: unkId = v.int32 ?? unkId
                case 41: bosId = v.int32 ?? bosId
                case 42: eosId = v.int32 ?? eosId
                case 43: padId = v.int32 ?? padId
                case 44: unkSurface = v.string ?? unkSurface
                default: break
                }
            }
        }
        var charsMapBytes: [UInt8] = []
        var addDummyPrefix = true, removeExtra = true, escape = true
        if let normalizer {
            var r = ProtobufReader(normalizer)
            while let (f, v) = try Self.wrap({ try r.next() }) {
                switch f {
                case 2: charsMapBytes = Array(v.data ?? [])
                case 3: addDummyPrefix = v.bool ?? true
                case 4: removeExtra = v.bool ?? true
                case 5: escape = v.bool ?? true
                default: break
                }
            }
        }
        guard !pieces.isEmpty else { throw ReelTokenizerError.malformed("it holds no pieces") }
        guard modelType == 1 else {
            throw ReelTokenizerError.unsupported("model type \(modelType) (only unigram, type 1, is implemented)")
        }
        guard !whitespaceAsSuffix else { throw ReelTokenizerError.unsupported("treat_whitespace_as_suffix") }
        guard Int(unkId) < pieces.count, unkId >= 0, types[Int(unkId)] == .unknown else {
            throw ReelTokenizerError.malformed("unk id \(unkId) does not name an UNKNOWN piece")
        }
        func optionalId(_ id: Int32) -> Int32? { id >= 0 && Int(id) < pieces.count ? id : nil }
        self.model = try UnigramModel(rules: .sentencePiece, pieces: pieces, scores: scores, types: types,
                                      unkId: unkId, byteFallback: byteFallback)
        self.charsMap = charsMapBytes.isEmpty ? nil : try PrecompiledCharsMap(charsMapBytes)
        self.addDummyPrefix = addDummyPrefix
        self.removeExtraWhitespaces = removeExtra
        self.escapeWhitespaces = escape
        self.unkSurface = unkSurface
        self.eosId = optionalId(eosId)
        self.padId = optionalId(padId)
        self.bosId = optionalId(bosId)
        let user = pieces.indices.filter { types[$0] == .userDefined }.map { (Array(pieces[$0].utf8), Int32($0)) }
        self.userSymbols = user.isEmpty ? nil : PieceTrie(user)
    }

    private static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as ProtobufReader.Error {
            throw ReelTokenizerError.malformed("\(error)")
        }
    }

    /// The ids of `text` without `</s>` (`SentencePieceProcessor::Encode`).
    func encode(_ text: String) -> [Int32] {
        let normalized = normalize(Array(text.utf8))
        var ids: [Int32] = []
        normalized.withUnsafeBufferPointer { model.encode($0, into: &ids) }
        return ids
    }

    /// `Normalizer::Normalize`: the precompiled map (longest match; user-defined symbols untouched),
    /// leading, trailing and repeated spaces removed, the dummy prefix, and spaces escaped as U+2581.
    func normalize(_ input: [UInt8]) -> [UInt8] {
        let space: [UInt8] = escapeWhitespaces ? [0xE2, 0x96, 0x81] : [0x20]
        return input.withUnsafeBufferPointer { text -> [UInt8] in
            var pos = 0
            if removeExtraWhitespaces {
                while pos < text.count {
                    let (replacement, length) = normalizePrefix(input, text, at: pos)
                    if !(replacement.count == 1 && replacement.first == 0x20) { break }
                    pos += length
                }
            }
            if pos >= text.count { return [] }
            var out: [UInt8] = []
            out.reserveCapacity(text.count * 3 / 2 + 3)
            if addDummyPrefix { out += space }
            var isPrevSpace = removeExtraWhitespaces
            while pos < text.count {
                var (piece, length) = normalizePrefix(input, text, at: pos)
                while isPrevSpace, piece.first == 0x20 { piece = piece.dropFirst() }
                if !piece.isEmpty {
                    for b in piece {
                        if escapeWhitespaces && b == 0x20 { out += space } else { out.append(b) }
                    }
                    isPrevSpace = piece.last == 0x20
                }
                pos += length
                if !removeExtraWhitespaces { isPrevSpace = false }
            }
            if removeExtraWhitespaces {
                while out.count >= space.count, out[(out.count - space.count)...].elementsEqual(space) {
                    out.removeLast(space.count)
                }
            }
            return out
        }
    }

    /// `Normalizer::NormalizePrefix`: the replacement of the longest rule at `pos` and the input
    /// bytes it consumes.
    private func normalizePrefix(_ input: [UInt8], _ text: UnsafeBufferPointer<UInt8>, at pos: Int) -> (ArraySlice<UInt8>, Int) {
        if let userSymbols {
            var longest = 0
            userSymbols.forEachPrefix(text, from: pos, end: text.count) { _, end in longest = end - pos }
            if longest > 0 { return (input[pos..<(pos + longest)], longest) }
        }
        if let charsMap, let match = charsMap.longestMatch(text, from: pos) {
            return (match.replacement, match.length)
        }
        let length = min(UnigramModel.utf8Length(text[pos]), text.count - pos)
        return (input[pos..<(pos + length)], length)
    }

    /// `SentencePieceProcessor::Decode`: control pieces vanish, the unknown piece reads as
    /// `unk_surface`, runs of byte pieces are decoded as UTF-8 (U+FFFD per invalid byte), U+2581
    /// becomes a space, and pieces lose a leading U+2581 until some text has been written.
    func decode(_ ids: [Int32]) -> String {
        var out: [UInt8] = []
        var pendingBytes: [UInt8] = []
        var isBosWhitespace = true  // stays true while everything decoded so far is empty
        func flushBytes() {
            guard !pendingBytes.isEmpty else { return }
            out += UTF8Repair.replacingInvalidBytes(pendingBytes)
            pendingBytes.removeAll()
            isBosWhitespace = false
        }
        for id in ids {
            guard id >= 0, Int(id) < model.pieces.count else { continue }
            let type = model.types[Int(id)]
            if type == .byte, let b = UnigramModel.byteValue(model.pieces[Int(id)]) {
                pendingBytes.append(UInt8(b))
                continue
            }
            flushBytes()
            let surface: [UInt8]
            switch type {
            case .control:
                continue
            case .unknown:
                surface = Array(unkSurface.utf8)
            default:
                var piece = Array(model.pieces[Int(id)].utf8)[...]
                if isBosWhitespace && (addDummyPrefix || removeExtraWhitespaces),
                   piece.starts(with: [0xE2, 0x96, 0x81]) {
                    piece = piece.dropFirst(3)
                }
                surface = UTF8Repair.replacing(piece, [0xE2, 0x96, 0x81], with: [0x20])
            }
            out += surface
            if !surface.isEmpty { isBosWhitespace = false }
        }
        flushBytes()
        return String(decoding: out, as: UTF8.self)
    }
}
