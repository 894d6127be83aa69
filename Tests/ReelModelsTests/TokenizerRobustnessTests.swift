import Foundation
import ReelCore
import ReelModels
import Testing

/// Bad files give typed errors naming the file; damaged models never crash; long input stays linear.
@Suite struct TokenizerRobustnessTests {
    @Test func missingFileIsNamed() {
        let url = URL(fileURLWithPath: "/nonexistent/spiece.model")
        #expect(throws: ReelError.badFile(path: url.path, message: "no such file")) { try Tokenizer(contentsOf: url) }
    }

    @Test(arguments: [
        Data(), Data("hello, not a tokenizer\n".utf8), Data("{\"model\": {\"type\": \"BPE\"}}".utf8),
        Data("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]], \"unk_id\": 5}}".utf8),
        Data("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\"]], \"unk_id\": 0}}".utf8),
        Data("{ truncated".utf8), Data([0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
    ])
    func notATokenizer(data: Data) {
        #expect(throws: ReelError.self) { try Tokenizer(data: data) }
    }

    @Test func damagedModelsNeverCrash() throws {
        let url = TokenizerFixtures.folder.appendingPathComponent("nfkc/spiece.model")
        let original = [UInt8](try Data(contentsOf: url))
        let texts = ["a red circle moves left", "ﬁne ＡＢＣ café 一只猫 😀", "  x  "]
        var generator = SplitMix64(seed: 7)
        var loaded = 0
        for round in 0..<300 {
            var bytes = original
            if round < 100 {
                bytes.removeLast(Int(generator.next() % UInt64(bytes.count)))  // truncated
            } else {
                for _ in 0..<(1 + round % 8) {  // a few bytes overwritten, anywhere (mostly the charsmap)
                    bytes[Int(generator.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: generator.next())
                }
            }
            guard let tokenizer = try? Tokenizer(data: Data(bytes)) else { continue }
            loaded += 1
            for text in texts { _ = try tokenizer.encode(text) }
        }
        #expect(loaded > 0)  // some damage leaves a loadable model, and encoding it must not crash
    }

    @Test func damagedCharsMapInJSONNeverCrashes() throws {
        let url = TokenizerFixtures.folder.appendingPathComponent("nfkc/tokenizer.json")
        let original = Array(try String(contentsOf: url, encoding: .utf8).utf8)
        let marker = Array("\"precompiled_charsmap\": \"".utf8)
        let start = try #require((0..<(original.count - marker.count)).first { original[$0..<($0 + marker.count)].elementsEqual(marker) }) + marker.count
        let end = try #require(original[start...].firstIndex(of: UInt8(ascii: "\"")))
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var generator = SplitMix64(seed: 3)
        var loaded = 0
        for round in 0..<40 {
            var bytes = original
            for _ in 0..<(1 + round % 16) {
                bytes[start + Int(generator.next() % UInt64(end - start))] = alphabet[Int(generator.next() % 64)]
            }
            guard let tokenizer = try? Tokenizer(data: Data(bytes)) else { continue }
            loaded += 1
            for text in ["ﬁne ＡＢＣ café 一只猫 😀", "e\u{301}\u{302}x ﾊﾟ"] { _ = try tokenizer.encode(text) }
        }
        #expect(loaded > 0)
    }

    @Test func maxLengthTooSmallIsAnError() throws {
        let tokenizer = try TokenizerFixtures.tokenizer("nfkc", "tokenizer.json")
        #expect(throws: ReelError.self) { try tokenizer.encode("abc", maxLength: 0) }
        #expect(try tokenizer.encode("a b c d e f", maxLength: 1) == [1])
    }

    @Test(arguments: ["tokenizer.json", "spiece.model"])
    func longInputIsLinear(file: String) throws {
        let tokenizer = try TokenizerFixtures.tokenizer("nfkc", file)
        let unit = "A red circle &amp; ＡＢＣ moves left, café 一只红色的猫 😀\u{3000}ﾊﾟ\t"
        let short = String(repeating: unit, count: 100)
        let long = String(repeating: unit, count: 1_600)  // over 100 KB
        #expect(long.utf8.count > 100_000)
        let clock = ContinuousClock()
        // The fastest of three runs each: a quadratic encoder would take ~256x for 16x the input, a linear one ~16x; the
        // minimum keeps a descheduled run (a shared machine, a loaded CI) from deciding.
        var short1 = Duration.seconds(1000), long1 = Duration.seconds(1000)
        var a: [Int32] = [], b: [Int32] = []
        for _ in 0..<3 {
            short1 = min(short1, try clock.measure { a = try tokenizer.encode(short, maxLength: nil) })
            long1 = min(long1, try clock.measure { b = try tokenizer.encode(long, maxLength: nil) })
        }
        #expect(b.count > 15 * a.count)
        #expect(long1 < short1 * 64 + .milliseconds(200), "\(short1) for 100 units, \(long1) for 1600")
        let cleaned = WanPromptCleaner.clean(String(repeating: "&amp;", count: 25_000) + "lt;")
        #expect(cleaned.hasPrefix("&"))
    }

    @Test func wanPromptIdsCleanAndTruncate() throws {
        let tokenizer = try TokenizerFixtures.tokenizer("nfkc", "tokenizer.json")
        let prompt = "  A “red” circle &amp;amp; a\u{3000}square\n\n" + String(repeating: "moves left ", count: 600)
        let ids = try tokenizer.wanPromptIds(prompt)
        #expect(ids.count == 512 && ids.last == tokenizer.eosId)
        #expect(ids == (try tokenizer.encode(WanPromptCleaner.clean(prompt))))
        #expect(tokenizer.decode(Array(ids.prefix(20))).hasPrefix("A \"red\" circle & a square"))
    }
}

/// A small deterministic generator for the damage test.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
