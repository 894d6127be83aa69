import Foundation
import ReelModels
import Testing

/// Reel's ids against both Python libraries on the fixture corpus: `tokenizer.json` must give the
/// `tokenizers` ids, `spiece.model` the `sentencepiece` ids. Where the libraries agree (most strings)
/// that is the same list; where they differ, each file follows its own library.
@Suite struct TokenizerParityTests {
    @Test(arguments: ["nfkc", "bytes"])
    func idsMatchBothLibraries(model: String) throws {
        let corpus = try #require(TokenizerFixtures.corpus, "Fixtures/tokenizer/corpus.json is missing or unreadable")
        let expected = try #require(corpus.models[model])
        #expect(corpus.texts.count >= 2000)
        let hf = try TokenizerFixtures.tokenizer(model, "tokenizer.json")
        let spm = try TokenizerFixtures.tokenizer(model, "spiece.model")
        #expect(hf.format == .huggingFace)
        #expect(spm.format == .sentencePiece)
        var hfFailures = 0, spmFailures = 0
        for (i, text) in corpus.texts.enumerated() {
            let a = try hf.encode(text, maxLength: nil)
            if a != expected.hf[i] {
                hfFailures += 1
                if hfFailures <= 5 { Issue.record("tokenizer.json #\(i) \(text.debugDescription): \(a) != \(expected.hf[i])") }
            }
            let b = try spm.encode(text, maxLength: nil)
            if b != expected.spm(i) {
                spmFailures += 1
                if spmFailures <= 5 { Issue.record("spiece.model #\(i) \(text.debugDescription): \(b) != \(expected.spm(i))") }
            }
        }
        #expect(hfFailures == 0)
        #expect(spmFailures == 0)
    }

    @Test(arguments: ["nfkc", "bytes"])
    func decodingMatchesBothLibraries(model: String) throws {
        let corpus = try #require(TokenizerFixtures.corpus)
        let expected = try #require(corpus.models[model])
        let hf = try TokenizerFixtures.tokenizer(model, "tokenizer.json")
        let spm = try TokenizerFixtures.tokenizer(model, "spiece.model")
        var failures = 0
        for i in expected.hfDecoded.indices {
            let a = hf.decode(expected.hf[i])
            let b = spm.decode(expected.spm(i))
            if !a.utf8.elementsEqual(expected.hfDecoded[i].utf8) || !b.utf8.elementsEqual(expected.spmDecoded[i].utf8) {
                failures += 1
                if failures <= 5 {
                    Issue.record("#\(i): tokenizers \(expected.hfDecoded[i].debugDescription) vs \(a.debugDescription); sentencepiece \(expected.spmDecoded[i].debugDescription) vs \(b.debugDescription)")
                }
            }
        }
        #expect(failures == 0)
    }

    @Test(arguments: ["nfkc", "bytes"])
    func truncationKeeps511AndEOS(model: String) throws {
        let corpus = try #require(TokenizerFixtures.corpus)
        let expected = try #require(corpus.models[model])
        let hf = try TokenizerFixtures.tokenizer(model, "tokenizer.json")
        let spm = try TokenizerFixtures.tokenizer(model, "spiece.model")
        for t in expected.truncated {
            let a = try hf.encode(t.text)
            #expect(a == t.hf)
            #expect(a.count == 512 && a.last == 1)
            #expect(try spm.encode(t.text) == t.spm)
        }
    }
}
