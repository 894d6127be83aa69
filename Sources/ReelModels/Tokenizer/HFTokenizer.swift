import Foundation

/// A tokenizer read from HF tokenizers' `tokenizer.json`, encoding as `tokenizers.Tokenizer.encode`
/// does: added tokens split out, each remaining piece normalized and pre-tokenized, each word
/// segmented by the Unigram model, then the post-processor's template applied.
///
/// Fields read: `added_tokens`, `normalizer`, `pre_tokenizer`, `model` (type `Unigram`:
/// `vocab` as `[piece, score]` pairs, `unk_id`, `byte_fallback`), `post_processor`
/// (`TemplateProcessing`), `decoder`. `truncation` and `padding` are ignored: Reel's callers pass
/// the length they want.
struct HFTokenizer: Sendable {
    let model: UnigramModel
    let added: HFAddedVocabulary
    let normalizer: HFNormalizer?
    let preTokenizer: HFPreTokenizer?
    let decoder: HFDecoder?
    /// The single-sequence template: nil entries stand for the sequence, others are special ids.
    let template: [[Int32]?]
    private let addedById: [Int32: HFAddedVocabulary.Token]

    init(data: Data) throws {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw ReelTokenizerError.malformed("not valid JSON (\(error.localizedDescription))")
        }
        guard let root = object as? [String: Any], let modelJSON = root["model"] as? [String: Any] else {
            throw ReelTokenizerError.malformed("no `model` object: not a tokenizer.json")
        }
        let type = modelJSON["type"] as? String ?? "(none)"
        guard type == "Unigram" else { throw ReelTokenizerError.unsupported("model type `\(type)` (only Unigram is implemented)") }
        guard let vocab = modelJSON["vocab"] as? [[Any]] else { throw ReelTokenizerError.malformed("Unigram model has no `vocab` list") }
        var pieces: [String] = []
        var scores: [Double] = []
        pieces.reserveCapacity(vocab.count)
        scores.reserveCapacity(vocab.count)
        for (i, entry) in vocab.enumerated() {
            guard entry.count == 2, let piece = entry[0] as? String, let score = (entry[1] as? NSNumber)?.doubleValue else {
                throw ReelTokenizerError.malformed("vocab entry \(i) is not a [piece, score] pair")
            }
            pieces.append(piece)
            scores.append(score)
        }
        guard let unkId = modelJSON["unk_id"] as? Int else {
            throw ReelTokenizerError.unsupported("a Unigram model without `unk_id`")
        }
        guard unkId >= 0, unkId < pieces.count else {
            throw ReelTokenizerError.malformed("unk_id \(unkId) is outside the vocabulary of \(pieces.count) pieces")
        }
        model = try UnigramModel(rules: .huggingFace, pieces: pieces, scores: scores,
                                 types: Array(repeating: .normal, count: pieces.count),
                                 unkId: Int32(unkId), byteFallback: modelJSON["byte_fallback"] as? Bool ?? false)
        normalizer = try (root["normalizer"] as? [String: Any]).map(HFNormalizer.init(json:))
        let model = self.model
        added = try HFAddedVocabulary(json: root["added_tokens"] as? [[String: Any]] ?? [],
                                      modelId: { model.pieceToId[$0] }, vocabularySize: model.pieces.count,
                                      normalizer: normalizer)
        preTokenizer = try (root["pre_tokenizer"] as? [String: Any]).map(HFPreTokenizer.init(json:))
        addedById = Dictionary(added.tokens.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last })
        decoder = try (root["decoder"] as? [String: Any]).map(HFDecoder.init(json:))
        template = try Self.readTemplate(root["post_processor"] as? [String: Any])
    }

    private static func readTemplate(_ json: [String: Any]?) throws -> [[Int32]?] {
        guard let json else { return [nil] }
        let type = json["type"] as? String ?? ""
        guard type == "TemplateProcessing" else { throw ReelTokenizerError.unsupported("post_processor type `\(type)`") }
        guard let single = json["single"] as? [[String: Any]] else {
            throw ReelTokenizerError.malformed("TemplateProcessing has no `single` template")
        }
        let specials = json["special_tokens"] as? [String: Any] ?? [:]
        var template: [[Int32]?] = []
        for item in single {
            if item["Sequence"] != nil {
                template.append(nil)
            } else if let special = item["SpecialToken"] as? [String: Any], let name = special["id"] as? String {
                guard let entry = specials[name] as? [String: Any], let ids = entry["ids"] as? [Int],
                      ids.allSatisfy({ $0 >= 0 && $0 < Int(Int32.max) }) else {
                    throw ReelTokenizerError.malformed("template names special token `\(name)` that `special_tokens` does not define")
                }
                template.append(ids.map { Int32($0) })
            } else {
                throw ReelTokenizerError.malformed("template item is neither Sequence nor SpecialToken")
            }
        }
        return template
    }

    /// The ids the template adds around the sequence.
    var specialTokenCount: Int { template.reduce(0) { $0 + ($1?.count ?? 0) } }

    /// The model's ids for `text`, before the post-processor.
    func encodeSequence(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        var lattice = UnigramModel.Lattice()
        for segment in added.split(text, normalizedTokens: false, atStart: true) {
            switch segment {
            case let .token(id):
                ids.append(id)
            case let .text(raw, atStart):
                let normalized = normalizer?.normalize(raw) ?? raw
                let parts = added.hasNormalizedTokens
                    ? added.split(normalized, normalizedTokens: true, atStart: atStart)
                    : [.text(normalized, atStart: atStart)]
                for part in parts {
                    switch part {
                    case let .token(id):
                        ids.append(id)
                    case let .text(piece, atStart):
                        let whole = HFPreTokenizer.Piece(bytes: Array(piece.utf8), atStart: atStart)
                        for word in preTokenizer?.split([whole]) ?? [whole] {
                            word.bytes.withUnsafeBufferPointer { model.encode($0, into: &ids, lattice: &lattice) }
                        }
                    }
                }
            }
        }
        return ids
    }

    /// The added token with `id`, if there is one.
    func addedToken(_ id: Int32) -> HFAddedVocabulary.Token? { addedById[id] }

    /// The template around `sequence`.
    func postProcess(_ sequence: [Int32]) -> [Int32] {
        template.flatMap { $0 ?? sequence }
    }

    /// `Tokenizer.decode`: ids to token strings (added tokens first), special tokens skipped if
    /// asked, then the decoder chain; without a decoder, tokens are joined by spaces.
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        var tokens: [String] = []
        for id in ids {
            if let t = addedById[id] {
                if skipSpecialTokens && t.special { continue }
                tokens.append(String(decoding: t.content, as: UTF8.self))
            } else if id >= 0, Int(id) < model.pieces.count {
                tokens.append(model.pieces[Int(id)])
            }
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decodeChain(tokens).joined()
    }
}
