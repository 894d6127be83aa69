import Foundation
import ReelModels

/// The tokenizer fixtures made by tools/fixtures/tokenizer/make.py (see its header).
enum TokenizerFixtures {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer")

    struct Truncated: Decodable {
        var text: String
        var hf: [Int32]
        var spm: [Int32]
    }

    struct ModelCase: Decodable {
        var hf: [[Int32]]
        var spmWhereDifferent: [String: [Int32]]
        var hfDecoded: [String]
        var spmDecoded: [String]
        var truncated: [Truncated]

        enum CodingKeys: String, CodingKey {
            case hf, truncated
            case spmWhereDifferent = "spm_where_different"
            case hfDecoded = "hf_decoded"
            case spmDecoded = "spm_decoded"
        }

        /// sentencepiece's ids for string `i`.
        func spm(_ i: Int) -> [Int32] { spmWhereDifferent[String(i)] ?? hf[i] }
    }

    struct Corpus: Decodable {
        var texts: [String]
        var models: [String: ModelCase]
    }

    static let corpus: Corpus? = {
        guard let data = try? Data(contentsOf: folder.appendingPathComponent("corpus.json")) else { return nil }
        return try? JSONDecoder().decode(Corpus.self, from: data)
    }()

    static func tokenizer(_ model: String, _ file: String) throws -> Tokenizer {
        try Tokenizer(contentsOf: folder.appendingPathComponent(model).appendingPathComponent(file))
    }
}
