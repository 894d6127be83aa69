import Foundation
@testable import ReelModels
import Testing

/// Wan's prompt cleaning against Python (ftfy.fix_text, html.unescape twice, whitespace collapse).
@Suite struct TokenizerCleaningTests {
    struct Cases: Decodable { var cases: [[Case]] }
    enum Case: Decodable {
        case text(String), flag(Bool)
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let b = try? c.decode(Bool.self) { self = .flag(b) } else { self = .text(try c.decode(String.self)) }
        }
    }

    @Test func matchesPythonWhereReelImplementsFtfy() throws {
        let data = try Data(contentsOf: TokenizerFixtures.folder.appendingPathComponent("clean.json"))
        let cases = try JSONDecoder().decode(Cases.self, from: data).cases
        var checked = 0, failures = 0
        for c in cases {
            guard case let .text(input) = c[0], case let .text(expected) = c[1], case let .flag(covered) = c[2] else {
                Issue.record("malformed case \(c)")
                continue
            }
            // Only strings ftfy's mojibake repair would leave alone (apart from C1 controls).
            guard covered else { continue }
            checked += 1
            let got = WanPromptCleaner.clean(input)
            if !got.unicodeScalars.elementsEqual(expected.unicodeScalars) {
                failures += 1
                if failures <= 8 { Issue.record("\(input.debugDescription): \(got.debugDescription) != \(expected.debugDescription)") }
            }
        }
        #expect(checked >= 1000)
        #expect(failures == 0)
    }

    @Test func pythonUnescapeEdgeCases() {
        #expect(HTMLEntities.pythonUnescape("&amp;lt;") == "&lt;")
        #expect(HTMLEntities.pythonUnescape("&notit; &amp &ampx") == "\u{AC}it; & &x")
        #expect(HTMLEntities.pythonUnescape("&#128;&#x41;&#0;&#1114112;&#99999999999999999999;") == "\u{20AC}A\u{FFFD}\u{FFFD}\u{FFFD}")
        #expect(HTMLEntities.pythonUnescape("&#1;x&#xFFFF;") == "x")
        #expect(HTMLEntities.pythonUnescape("& &# &#x; &unknownname;") == "& &# &#x; &unknownname;")
    }

    @Test func ftfyUnescapeIsStricter() {
        #expect(HTMLEntities.ftfyUnescape("&amp &EACUTE; &notit; &amp;") == "&amp \u{C9} &notit; &")
    }
}
