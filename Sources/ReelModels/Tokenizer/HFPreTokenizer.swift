/// A pre-tokenizer of HF tokenizers' `tokenizer.json` (`pre_tokenizers/*.rs`): splits a normalized
/// piece of text into the words the model segments one by one.
indirect enum HFPreTokenizer: Sendable {
    /// How Metaspace prepends its replacement character.
    enum PrependScheme: Sendable { case always, first, never }

    case sequence([HFPreTokenizer])
    case metaspace(replacement: String, prepend: PrependScheme, split: Bool)
    case whitespaceSplit

    init(json: [String: Any]) throws {
        let type = json["type"] as? String ?? ""
        switch type {
        case "Sequence":
            guard let list = json["pretokenizers"] as? [[String: Any]] else {
                throw ReelTokenizerError.malformed("pre_tokenizer Sequence has no `pretokenizers` list")
            }
            self = .sequence(try list.map(HFPreTokenizer.init(json:)))
        case "Metaspace":
            let (replacement, scheme) = try Self.metaspaceFields(json)
            self = .metaspace(replacement: replacement, prepend: scheme, split: json["split"] as? Bool ?? true)
        case "WhitespaceSplit":
            self = .whitespaceSplit
        default:
            throw ReelTokenizerError.unsupported("pre_tokenizer type `\(type)`")
        }
    }

    /// The replacement and prepend scheme of a Metaspace pre-tokenizer or decoder, in the current
    /// (`prepend_scheme`) or the older (`add_prefix_space`) spelling.
    static func metaspaceFields(_ json: [String: Any]) throws -> (String, PrependScheme) {
        let replacement = json["replacement"] as? String ?? "\u{2581}"
        guard replacement.unicodeScalars.count == 1 else {
            throw ReelTokenizerError.malformed("Metaspace replacement `\(replacement)` is not one character")
        }
        let scheme: PrependScheme
        switch json["prepend_scheme"] as? String {
        case "always": scheme = .always
        case "first": scheme = .first
        case "never": scheme = .never
        case nil: scheme = (json["add_prefix_space"] as? Bool ?? true) ? .always : .never
        case let other?: throw ReelTokenizerError.unsupported("Metaspace prepend_scheme `\(other)`")
        }
        return (replacement, scheme)
    }

    /// A piece of text (UTF-8) and whether it begins at offset 0 of the original input.
    struct Piece {
        var bytes: [UInt8]
        var atStart: Bool
    }

    func split(_ pieces: [Piece]) -> [Piece] {
        switch self {
        case let .sequence(list):
            return list.reduce(pieces) { $1.split($0) }
        case .whitespaceSplit:
            var out: [Piece] = []
            for piece in pieces {
                let text = String(decoding: piece.bytes, as: UTF8.self)
                var wordStart: String.UnicodeScalarView.Index?
                var index = text.unicodeScalars.startIndex
                let scalars = text.unicodeScalars
                func emit(_ end: String.UnicodeScalarView.Index) {
                    guard let ws = wordStart else { return }
                    out.append(Piece(bytes: Array(text.utf8[ws..<end]), atStart: piece.atStart && ws == scalars.startIndex))
                    wordStart = nil
                }
                while index < scalars.endIndex {
                    if scalars[index].properties.isWhitespace { emit(index) } else if wordStart == nil { wordStart = index }
                    index = scalars.index(after: index)
                }
                emit(scalars.endIndex)
            }
            return out
        case let .metaspace(replacement, prepend, split):
            var out: [Piece] = []
            let rep = Array(replacement.utf8)
            for piece in pieces {
                var bytes = UTF8Repair.replacing(piece.bytes[...], [0x20], with: rep)
                if bytes.isEmpty { continue }
                let startsWithRep = bytes.starts(with: rep)
                switch prepend {
                case .always: if !startsWithRep { bytes = rep + bytes }
                case .first: if !startsWithRep && piece.atStart { bytes = rep + bytes }
                case .never: break
                }
                guard split else {
                    out.append(Piece(bytes: bytes, atStart: piece.atStart))
                    continue
                }
                // MergedWithNext: every replacement character starts a new word.
                var start = 0
                var i = 1
                while i < bytes.count {
                    if bytes[i] == rep[0], bytes.count - i >= rep.count, bytes[i..<(i + rep.count)].elementsEqual(rep) {
                        out.append(Piece(bytes: Array(bytes[start..<i]), atStart: piece.atStart && start == 0))
                        start = i
                    }
                    i += 1
                }
                out.append(Piece(bytes: Array(bytes[start...]), atStart: piece.atStart && start == 0))
            }
            return out
        }
    }
}
