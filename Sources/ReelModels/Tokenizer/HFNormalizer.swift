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
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + bytes.count / 8)
        bytes.withUnsafeBufferPointer { all in
            var start = 0
            var index = text.startIndex
            while index < text.endIndex {
                // Fast path: an ASCII byte followed by another (CR LF aside) is a grapheme of its own.
                let b = all[start]
                if b < 0x80, start + 1 == all.count || (all[start + 1] < 0x80 && !(b == 0x0D && all[start + 1] == 0x0A)) {
                    if let r = map.asciiTransforms[Int(b)] { out += r } else { out.append(b) }
                    start += 1
                    index = text.utf8.index(after: index)
                    continue
                }
                let next = text.index(after: index)  // grapheme clusters, as unicode-segmentation's graphemes(true)
                let end = start + text.utf8.distance(from: index, to: next)
                let grapheme = UnsafeBufferPointer(rebasing: all[start..<end])
                if end - start < 6, let r = map.transform(grapheme) {
                    out += r
                } else {
                    var i = start
                    while i < end {
                        let n = min(UnigramModel.utf8Length(all[i]), end - i)
                        if let r = map.transform(UnsafeBufferPointer(rebasing: all[i..<(i + n)])) {
                            out += r
                        } else {
                            out += all[i..<(i + n)]
                        }
                        i += n
                    }
                }
                start = end
                index = next
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The `pattern` of a Replace normalizer or decoder: a literal string or a regular expression.
enum HFPattern: @unchecked Sendable {  // NSRegularExpression is immutable and thread-safe
    case string(String)
    /// A regex of the form `c{n,}` for a literal ASCII character (SentencePiece converters' `" {2,}"`),
    /// replaced without the regex engine.
    case repeated(UInt8, atLeast: Int)
    case regex(NSRegularExpression)

    init(json: Any?) throws {
        guard let object = json as? [String: Any] else { throw ReelTokenizerError.malformed("Replace has no `pattern`") }
        if let s = object["String"] as? String {
            self = .string(s)
        } else if let r = object["Regex"] as? String {
            let u = Array(r.utf8)
            if u.count >= 5, u[0] < 0x80, !"\\^$.|?*+()[]{}".utf8.contains(u[0]), u[1] == UInt8(ascii: "{"),
               u.suffix(2).elementsEqual(",}".utf8), let n = Int(String(decoding: u[2..<(u.count - 2)], as: UTF8.self)), n >= 1 {
                self = .repeated(u[0], atLeast: n)
                return
            }
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
        case let .repeated(c, atLeast):
            guard text.utf8.contains(c) else { return text }
            let replacement = Array(content.utf8)
            var out: [UInt8] = []
            var run = 0
            func flush() {
                if run >= atLeast { out += replacement } else { out += repeatElement(c, count: run) }
                run = 0
            }
            for b in text.utf8 {
                if b == c { run += 1 } else { flush(); out.append(b) }
            }
            flush()
            return String(decoding: out, as: UTF8.self)
        case let .regex(r):
            return r.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text),
                                              withTemplate: NSRegularExpression.escapedTemplate(for: content))
        }
    }
}
