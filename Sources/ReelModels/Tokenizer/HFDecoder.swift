/// A decoder of HF tokenizers' `tokenizer.json` (`decoders/*.rs`): turns token strings back into text.
indirect enum HFDecoder: Sendable {
    case sequence([HFDecoder])
    case metaspace(replacement: String, prepend: HFPreTokenizer.PrependScheme)
    case replace(HFPattern, String)
    case byteFallback
    case fuse
    case strip(content: String, start: Int, stop: Int)

    init(json: [String: Any]) throws {
        let type = json["type"] as? String ?? ""
        switch type {
        case "Sequence":
            guard let list = json["decoders"] as? [[String: Any]] else {
                throw ReelTokenizerError.malformed("decoder Sequence has no `decoders` list")
            }
            self = .sequence(try list.map(HFDecoder.init(json:)))
        case "Metaspace":
            let (replacement, scheme) = try HFPreTokenizer.metaspaceFields(json)
            self = .metaspace(replacement: replacement, prepend: scheme)
        case "Replace":
            guard let content = json["content"] as? String else { throw ReelTokenizerError.malformed("Replace decoder has no `content`") }
            self = .replace(try HFPattern(json: json["pattern"]), content)
        case "ByteFallback": self = .byteFallback
        case "Fuse": self = .fuse
        case "Strip":
            self = .strip(content: json["content"] as? String ?? " ", start: json["start"] as? Int ?? 0, stop: json["stop"] as? Int ?? 0)
        default:
            throw ReelTokenizerError.unsupported("decoder type `\(type)`")
        }
    }

    /// `Decoder::decode_chain`.
    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case let .sequence(list):
            return list.reduce(tokens) { $1.decodeChain($0) }
        case let .metaspace(replacement, prepend):
            let rep = replacement.unicodeScalars.first
            return tokens.enumerated().map { i, token in
                var out = String.UnicodeScalarView()
                for s in token.unicodeScalars {
                    if s == rep {
                        if i == 0 && prepend != .never { continue }
                        out.append(" ")
                    } else {
                        out.append(s)
                    }
                }
                return String(out)
            }
        case let .replace(pattern, content):
            return tokens.map { pattern.replaceAll(in: $0, with: content) }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) {
                    out.append(s)
                } else {
                    out += Array(repeating: "\u{FFFD}", count: pending.count)
                }
                pending.removeAll()
            }
            for token in tokens {
                if let b = UnigramModel.byteValue(token) { pending.append(UInt8(b)) } else { flush(); out.append(token) }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case let .strip(content, start, stop):
            let c = content.unicodeScalars.first
            return tokens.map { token in
                var scalars = Array(token.unicodeScalars)
                var lead = 0
                while lead < start, lead < scalars.count, scalars[lead] == c { lead += 1 }
                scalars.removeFirst(lead)
                var trail = 0
                while trail < stop, let last = scalars.last, last == c { scalars.removeLast(); trail += 1 }
                var view = String.UnicodeScalarView()
                view.append(contentsOf: scalars)
                return String(view)
            }
        }
    }
}
