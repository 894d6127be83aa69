/// HTML character references, decoded the two ways Wan's prompt cleaning does: Python's
/// `html.unescape`, and ftfy's stricter `unescape_html`.
enum HTMLEntities {
    /// Named references: `"amp;"` to `"&"`, `"amp"` to `"&"`, ... (HTML5, with the legacy ones
    /// that decode without a semicolon).
    static let named: [String: String] = {
        var map: [String: String] = [:]
        for line in table.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            var value = String.UnicodeScalarView()
            for hex in line[line.index(after: eq)...].split(separator: " ") {
                if let v = UInt32(hex, radix: 16), let s = Unicode.Scalar(v) { value.append(s) }
            }
            map[String(line[..<eq])] = String(value)
        }
        return map
    }()

    /// The windows-1252 characters HTML substitutes for numeric references to C1 controls
    /// (Python's `html._invalid_charrefs`), which also maps 0 to U+FFFD and 13 to CR.
    static let invalidCharRefs: [UInt32: Unicode.Scalar] = {
        var map: [UInt32: Unicode.Scalar] = [0x00: "\u{FFFD}", 0x0D: "\r"]
        for (i, s) in windows1252C1.enumerated() { map[0x80 + UInt32(i)] = s }
        return map
    }()

    /// Code points 0x80-0x9F as windows-1252 reads them; the five bytes it leaves undefined map
    /// to themselves (ftfy's "sloppy" windows-1252).
    static let windows1252C1: [Unicode.Scalar] = [
        "\u{20AC}", "\u{81}", "\u{201A}", "\u{0192}", "\u{201E}", "\u{2026}", "\u{2020}", "\u{2021}",
        "\u{02C6}", "\u{2030}", "\u{0160}", "\u{2039}", "\u{0152}", "\u{8D}", "\u{017D}", "\u{8F}",
        "\u{90}", "\u{2018}", "\u{2019}", "\u{201C}", "\u{201D}", "\u{2022}", "\u{2013}", "\u{2014}",
        "\u{02DC}", "\u{2122}", "\u{0161}", "\u{203A}", "\u{0153}", "\u{9D}", "\u{017E}", "\u{0178}",
    ]

    /// Code points a numeric reference decodes to nothing (Python's `html._invalid_codepoints`).
    static func isInvalidCodePoint(_ v: UInt32) -> Bool {
        (0x1...0x8).contains(v) || v == 0xB || (0xE...0x1F).contains(v) || (0x7F...0x9F).contains(v)
            || (0xFDD0...0xFDEF).contains(v) || (v & 0xFFFE == 0xFFFE && v <= 0x10FFFF)
    }

    /// Python's `html.unescape`: `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`, numeric
    /// references with HTML's substitutions, names matched whole or by their longest known prefix.
    static func pythonUnescape(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "&")) else { return text }
        let s = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < s.count {
            guard s[i] == "&", i + 1 < s.count else { out.append(s[i]); i += 1; continue }
            if let (decoded, end) = numericReference(s, at: i + 1, optionalSemicolon: true) {
                out.append(contentsOf: decoded.unicodeScalars)
                i = end
                continue
            }
            // A name: 1 to 32 characters outside "\t\n\f <&#;", then an optional ';'.
            var end = i + 1
            while end < s.count, end - (i + 1) < 32, !"\t\n\u{0C} <&#;".unicodeScalars.contains(s[end]) { end += 1 }
            guard end > i + 1 else { out.append(s[i]); i += 1; continue }
            if end < s.count, s[end] == ";" { end += 1 }
            let name = String(String.UnicodeScalarView(s[(i + 1)..<end]))
            out.append(contentsOf: decodeName(name).unicodeScalars)
            i = end
        }
        return String(out)
    }

    private static func decodeName(_ name: String) -> String {
        if let v = named[name] { return v }
        let scalars = Array(name.unicodeScalars)
        var x = scalars.count - 1
        while x > 1 {
            let prefix = String(String.UnicodeScalarView(scalars[..<x]))
            if let v = named[prefix] { return v + String(String.UnicodeScalarView(scalars[x...])) }
            x -= 1
        }
        return "&" + name
    }

    /// A numeric reference starting after the `&` at `start` (`#123;` or `#x1F;`): its text and end.
    static func numericReference(_ s: [Unicode.Scalar], at start: Int, optionalSemicolon: Bool) -> (String, Int)? {
        guard start < s.count, s[start] == "#" else { return nil }
        var i = start + 1
        var radix: UInt32 = 10
        if i + 1 < s.count, s[i] == "x" || s[i] == "X", s[i + 1].properties.isASCIIHexDigit { radix = 16; i += 1 }
        let digitsStart = i
        var value: UInt32 = 0
        while i < s.count {
            let c = s[i]
            let digit: UInt32
            switch c {
            case "0"..."9": digit = c.value - 48
            case "a"..."f" where radix == 16: digit = c.value - 87
            case "A"..."F" where radix == 16: digit = c.value - 55
            default: digit = UInt32.max
            }
            if digit == UInt32.max { break }
            value = min(value &* radix &+ digit, 0x11_0000)  // anything past U+10FFFF reads as U+FFFD
            i += 1
        }
        guard i > digitsStart else { return nil }
        if optionalSemicolon, i < s.count, s[i] == ";" { i += 1 }
        if let r = invalidCharRefs[value] { return (String(r), i) }
        if (0xD800...0xDFFF).contains(value) || value > 0x10FFFF { return ("\u{FFFD}", i) }
        if isInvalidCodePoint(value) { return ("", i) }
        return (Unicode.Scalar(value).map { String($0) } ?? "\u{FFFD}", i)
    }

    /// ftfy's entity table: the HTML5 names that end in `;`, plus upper-cased forms of the
    /// lower-case ones that `html.unescape` would leave alone (`&EACUTE;` reads as `É`).
    static let ftfyNamed: [String: String] = {
        var map: [String: String] = [:]
        for (name, value) in named where name.hasSuffix(";") {
            map[name] = value
            if name == name.lowercased() {
                let upper = name.uppercased()
                if pythonUnescape("&" + upper) == "&" + upper { map[upper] = value.uppercased() }
            }
        }
        return map
    }()

    /// ftfy's `unescape_html`: only `&#?[0-9A-Za-z]{1,24};` is decoded, names from `ftfyNamed`,
    /// numeric references only when `html.unescape` consumes them whole.
    static func ftfyUnescape(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "&")) else { return text }
        let s = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        func isAlnum(_ c: Unicode.Scalar) -> Bool { c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c)) }
        while i < s.count {
            guard s[i] == "&" else { out.append(s[i]); i += 1; continue }
            var j = i + 1
            if j < s.count, s[j] == "#" { j += 1 }
            let runStart = j
            while j < s.count, j - runStart < 24, isAlnum(s[j]) { j += 1 }
            guard j > runStart, j < s.count, s[j] == ";" else { out.append(s[i]); i += 1; continue }
            let match = String(String.UnicodeScalarView(s[i...j]))
            let body = String(String.UnicodeScalarView(s[(i + 1)...j]))
            if let v = ftfyNamed[body] {
                out.append(contentsOf: v.unicodeScalars)
            } else if s[i + 1] == "#" {
                let decoded = pythonUnescape(match)
                out.append(contentsOf: (decoded.contains(";") ? match : decoded).unicodeScalars)
            } else {
                out.append(contentsOf: match.unicodeScalars)
            }
            i = j + 1
        }
        return String(out)
    }
}
