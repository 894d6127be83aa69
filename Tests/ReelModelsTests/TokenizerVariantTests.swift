import Foundation
import ReelModels
import Testing

/// Other shapes of tokenizer.json (the older converter that made google/umt5-xxl's file,
/// WhitespaceSplit, prepend_scheme "first", Lowercase/Strip/string Replace, split false), made by
/// patching nfkc/tokenizer.json exactly as make.py did, against the `tokenizers` ids it recorded.
@Suite struct TokenizerVariantTests {
    static let variantNames = ["legacy_umt5", "whitespace_split", "prepend_first", "no_split_lowercase"]

    @Test(arguments: variantNames)
    func variantMatchesTokenizers(name: String) throws {
        let corpusURL = TokenizerFixtures.folder.appendingPathComponent("corpus.json")
        let root = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: corpusURL)) as? [String: Any])
        let variant = try #require((root["variants"] as? [String: Any])?[name] as? [String: Any], "variant \(name) missing")
        let patch = try #require(variant["patch"] as? [String: Any])
        let differing = try #require(variant["hf_where_different"] as? [String: [Int]])
        let corpus = try #require(TokenizerFixtures.corpus)
        let base = try #require(corpus.models["nfkc"])

        let baseURL = TokenizerFixtures.folder.appendingPathComponent("nfkc/tokenizer.json")
        var doc = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: baseURL)) as? [String: Any])
        let precompiled = try #require(((doc["normalizer"] as? [String: Any])?["normalizers"] as? [Any])?.first)
        func substitute(_ value: Any) -> Any {
            if let s = value as? String, s == "PRECOMPILED" { return precompiled }
            if let d = value as? [String: Any] { return d.mapValues(substitute) }
            if let a = value as? [Any] { return a.map(substitute) }
            return value
        }
        for key in ["normalizer", "pre_tokenizer", "decoder"] {
            if let p = patch[key] { doc[key] = substitute(p) }
        }
        if let extra = patch["extra_added_tokens"] as? [Any] { doc["added_tokens"] = (doc["added_tokens"] as? [Any] ?? []) + extra }
        let tokenizer = try Tokenizer(data: JSONSerialization.data(withJSONObject: doc))

        var failures = 0
        for (i, text) in corpus.texts.enumerated() {
            let expected = differing[String(i)].map { $0.map(Int32.init) } ?? base.hf[i]
            let got = try tokenizer.encode(text, maxLength: nil)
            if got != expected {
                failures += 1
                if failures <= 5 { Issue.record("\(name) #\(i) \(text.debugDescription): \(got) != \(expected)") }
            }
        }
        #expect(failures == 0)
    }
}
