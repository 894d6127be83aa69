import Foundation

/// A normalizer of HF tokenizers' `tokenizer.json` (`normalizers/*.rs`), applied to each piece of
/// text between added tokens.
indirect enum HFNormalizer: Sendable {
    case sequence([HFNormalizer])
    /// SentencePiece's map, applied per grapheme as `normalizers/precompiled.rs` does.
    case precompiled(PrecompiledCharsMap)
    case replace(HFPattern, String)
    case strip(left: Bool, right: Bool)
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case prepend(String)

    /// Reads one `normalizer` object.
    init(json: [String: Any]) throws {
        let type = json["type"] as? String ?? ""
        switch type {
        case "Sequence":
            guard let list = json["normalizers"] as? [[String: Any]] else {
                throw ReelTokenizerError.malformed("normalizer Sequence has no `normalizers` list")
            }
            self = .sequence(try list.map(HFNormalizer.init(json:)))
        case "Precompiled":
            guard let b64 = json["precompiled_charsmap"] as? String else {
                self = .sequence([])  // tokenizers accepts a null map and then does nothing
                return
            }
            guard let data = Data(base64Encoded: b64) else {
                throw ReelTokenizerError.malformed("Precompiled normalizer: precompiled_charsmap is not base64")
            }
            self = data.isEmpty ? .sequence([]) : .precompiled(try PrecompiledCharsMap([UInt8](data)))
        case "Replace":
            guard let content = json["content"] as? String else {
                throw ReelTokenizerError.malformed("Replace normalizer has no `content`")
            }
            self = .replace(try HFPattern(json: json["pattern"]), content)
        case "Strip":
            self = .strip(left: json["strip_left"] as? Bool ?? true, right: json["strip_right"] as? Bool ?? true)
        case "NFC": self = .nfc
        case "NFD": self = .nfd
        case "NFKC": self = .nfkc
        case "NFKD": self = .nfkd
        case "Lowercase": self = .lowercase
        case "Prepend":
            guard let p = json["prepend"] as? String else { throw ReelTokenizerError.malformed("Prepend normalizer has no `prepend`") }
            self = .prepend(p)
        default:
            throw ReelTokenizerError.unsupported("normalizer type `\(type)`")
        }
    }

    func normalize(_ text: String) -> String {
        switch self {
        case let .sequence(list):
            return list.reduce(text) { $1.normalize($0) }
        case let .precompiled(map):
            return Self.applyPrecompiled(map, text)
        case let .replace(pattern, content):
            return pattern.replaceAll(in: text, with: content)
        case let .strip(left, right):
            var scalars = Substring(text).unicodeScalars[...]
            if left { while let f = scalars.first, f.properties.isWhitespace { scalars = scalars.dropFirst() } }
            if right { while let l = scalars.last, l.properties.isWhitespace { scalars = scalars.dropLast() } }
            return String(String.UnicodeScalarView(scalars))
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .lowercase: return text.lowercased()
        case let .prepend(p): return text.isEmpty ? text : p + text
        }
    }

    /// `Precompiled::normalize`: for each grapheme shorter than 6 bytes, the map's first match
    /// replaces the whole grapheme; otherwise (or without a match) each character is mapped alone.
    private static func applyPrecompiled(_ map: PrecompiledCharsMap, _ text: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for grapheme in text {
            let bytes = Array(grapheme.utf8)
            if bytes.count < 6, let r = bytes.withUnsafeBufferPointer({ map.transform($0) }) {
                out += r
                continue
            }
            for scalar in grapheme.unicodeScalars {
                let sb = Array(String(scalar).utf8)
                if let r = sb.withUnsafeBufferPointer({ map.transform($0) }) { out += r } else { out += sb }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The `pattern` of a Replace normalizer or decoder: a literal string or a regular expression.
enum HFPattern: @unchecked Sendable {  // NSRegularExpression is immutable and thread-safe
    case string(String)
    case regex(NSRegularExpression)

    init(json: Any?) throws {
        guard let object = json as? [String: Any] else { throw ReelTokenizerError.malformed("Replace has no `pattern`") }
        if let s = object["String"] as? String {
            self = .string(s)
        } else if let r = object["Regex"] as? String {
            do { self = .regex(try NSRegularExpression(pattern: r)) } catch {
                throw ReelTokenizerError.unsupported("regular expression `\(r)`")
            }
        } else {
            throw ReelTokenizerError.malformed("Replace pattern is neither String nor Regex")
        }
    }

    func replaceAll(in text: String, with content: String) -> String {
        switch self {
        case let .string(s):
            // byte-wise, so a combining mark after the pattern does not hide it (Rust's str::replace)
            guard !s.isEmpty else { return text }
            return String(decoding: UTF8Repair.replacing(Array(text.utf8)[...], Array(s.utf8), with: Array(content.utf8)), as: UTF8.self)
        case let .regex(r):
            return r.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text),
                                              withTemplate: NSRegularExpression.escapedTemplate(for: content))
        }
    }
}
