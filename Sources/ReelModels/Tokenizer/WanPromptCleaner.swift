import Foundation

/// Wan's prompt cleaning for the umT5 tokenizer (Wan2.1 `wan/modules/tokenizers.py`,
/// `HuggingfaceTokenizer(clean='whitespace')`): `whitespace_clean(basic_clean(text))`, that is
/// `ftfy.fix_text`, `html.unescape` twice, `strip`, then every run of whitespace made one space.
///
/// Of `ftfy.fix_text` (ftfy 6.3, default configuration) Reel implements, in ftfy's order and
/// repeated until nothing changes, per line: `unescape_html` (skipped from the first line that
/// contains `<` on, as ftfy does), `fix_c1_controls`, `fix_latin_ligatures`, `fix_character_width`,
/// `uncurl_quotes`, `fix_line_breaks`, `remove_terminal_escapes`, `remove_control_chars` and NFC.
/// Not implemented: `fix_encoding`'s mojibake detection (re-decoding text that was UTF-8 read as
/// Latin-1 or Windows-1252, such as "cafÃ©"): text like that is left as it is. `fix_surrogates`
/// has nothing to do on a Swift string, which cannot hold lone surrogates. ftfy's fixed-point loop
/// stops after 32 rounds per line (only text with entities nested deeper than that differs).
public enum WanPromptCleaner {
    /// `whitespace_clean(basic_clean(text))`.
    public static func clean(_ text: String) -> String {
        var t = fixText(text)
        t = HTMLEntities.pythonUnescape(HTMLEntities.pythonUnescape(t))
        return collapseWhitespace(t)
    }

    /// The implemented part of `ftfy.fix_text` (see the type's documentation).
    public static func fixText(_ text: String) -> String {
        var out = ""
        var unescape = true
        var rest = Substring(text)
        while !rest.isEmpty {
            // Segments end after each "\n" (ftfy splits on "\n" only, before fixing line breaks).
            let end = rest.utf8.firstIndex(of: UInt8(ascii: "\n")).map { rest.utf8.index(after: $0) } ?? rest.endIndex
            let segment = String(rest[..<end])
            if segment.utf8.contains(UInt8(ascii: "<")) { unescape = false }
            out += fixSegment(segment, unescape: unescape)
            rest = rest[end...]
        }
        return out
    }

    private static func fixSegment(_ segment: String, unescape: Bool) -> String {
        var text = segment
        // ftfy repeats until nothing changes; each round can peel one level of nested entities
        // ("&amp;amp;amp;..."), so a hostile line could take as many rounds as it has characters.
        // Real prompts settle in two or three rounds; 32 bounds the work at a linear cost.
        for _ in 0..<32 {
            let original = text
            if unescape { text = HTMLEntities.ftfyUnescape(text) }
            text = mapScalars(text) { s, out in
                switch s.value {
                case 0x80...0x9F: out.append(HTMLEntities.windows1252C1[Int(s.value - 0x80)])  // fix_c1_controls
                default: out.append(s)
                }
            }
            text = mapScalars(text) { s, out in
                if let lig = ligatures[s.value] { out.append(contentsOf: lig.unicodeScalars) } else { out.append(s) }
            }
            text = mapScalars(text) { s, out in
                if let w = widthMap[s.value] { out.append(contentsOf: w.unicodeScalars) } else { out.append(s) }
            }
            text = mapScalars(text) { s, out in  // uncurl_quotes
                switch s.value {
                case 0x02BC, 0x2018...0x201B: out.append("'")
                case 0x201C...0x201F: out.append("\"")
                default: out.append(s)
                }
            }
            text = fixLineBreaks(text)
            text = removeTerminalEscapes(text)
            text = mapScalars(text) { s, out in if !isControlToRemove(s.value) { out.append(s) } }
            text = text.precomposedStringWithCanonicalMapping
            if text.unicodeScalars.elementsEqual(original.unicodeScalars) { return text }
        }
        return text
    }

    private static func mapScalars(_ text: String, _ body: (Unicode.Scalar, inout String.UnicodeScalarView) -> Void) -> String {
        var out = String.UnicodeScalarView()
        for s in text.unicodeScalars { body(s, &out) }
        return String(out)
    }

    /// ftfy's LIGATURES: Latin single-character ligatures and digraphs.
    static let ligatures: [UInt32: String] = [
        0x0132: "IJ", 0x0133: "ij", 0x0149: "\u{02BC}n", 0x01F1: "DZ", 0x01F2: "Dz", 0x01F3: "dz",
        0x01C4: "D\u{017D}", 0x01C5: "D\u{017E}", 0x01C6: "d\u{017E}", 0x01C7: "LJ", 0x01C8: "Lj", 0x01C9: "lj",
        0x01CA: "NJ", 0x01CB: "Nj", 0x01CC: "nj", 0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi",
        0xFB04: "ffl", 0xFB05: "\u{017F}t", 0xFB06: "st",
    ]

    /// ftfy's WIDTH_MAP: U+3000 to a space, and U+FF01-U+FFEF to their NFKC forms where those differ.
    static let widthMap: [UInt32: String] = {
        var map: [UInt32: String] = [0x3000: " "]
        for v in UInt32(0xFF01)..<0xFFF0 {
            guard let s = Unicode.Scalar(v) else { continue }
            let c = String(s)
            let n = c.precomposedStringWithCompatibilityMapping
            if !n.unicodeScalars.elementsEqual(c.unicodeScalars) { map[v] = n }
        }
        return map
    }()

    /// fix_line_breaks: CRLF, CR, U+2028, U+2029 and U+0085 become "\n".
    private static func fixLineBreaks(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        var previousCR = false
        for s in text.unicodeScalars {
            if s == "\n" && previousCR { previousCR = false; continue }
            previousCR = s == "\r"
            switch s.value {
            case 0x0D, 0x2028, 0x2029, 0x85: out.append("\n")
            default: out.append(s)
            }
        }
        return String(out)
    }

    /// remove_terminal_escapes: `\x1b\[((?:\d|;)*)([a-zA-Z])` removed (`\d`: any decimal digit).
    private static func removeTerminalEscapes(_ text: String) -> String {
        guard text.utf8.contains(0x1B) else { return text }
        let s = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < s.count {
            if s[i] == "\u{1B}", i + 1 < s.count, s[i + 1] == "[" {
                var j = i + 2
                while j < s.count, s[j] == ";" || s[j].properties.numericType == .decimal { j += 1 }
                if j < s.count, s[j].isASCII, s[j].properties.isAlphabetic {
                    i = j + 1
                    continue
                }
            }
            out.append(s[i])
            i += 1
        }
        return String(out)
    }

    /// remove_control_chars: C0 controls other than \t \n \f \r, DEL, the deprecated Arabic format
    /// controls, the BOM and the interlinear annotation characters and U+FFFC.
    private static func isControlToRemove(_ v: UInt32) -> Bool {
        v <= 0x08 || v == 0x0B || (0x0E...0x1F).contains(v) || v == 0x7F || (0x206A...0x206F).contains(v)
            || v == 0xFEFF || (0xFFF9...0xFFFC).contains(v)
    }

    /// Python's `str.isspace` (what `\s` and `strip()` use on `str`).
    static func isPythonWhitespace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: true
        default: false
        }
    }

    /// `re.sub(r'\s+', ' ', text).strip()` after `strip()`: no leading or trailing whitespace,
    /// every inner run one space.
    private static func collapseWhitespace(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        var pendingSpace = false
        for s in text.unicodeScalars {
            if isPythonWhitespace(s) {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" "); pendingSpace = false }
                out.append(s)
            }
        }
        return String(out)
    }
}
