import Foundation
import ReelCore

/// The SentencePiece unigram tokenizer of umT5 (google/umt5-xxl: pad 0, `</s>` 1, unk 2, no BOS).
///
/// Reads either file a model ships: HF tokenizers' `tokenizer.json`, encoded as the `tokenizers`
/// library does, or SentencePiece's `spiece.model`, encoded as the `sentencepiece` library does
/// (the two agree on ordinary text; ``Tokenizer/Format`` notes where they part). Encoding appends
/// `</s>` and truncates as Wan does: at most `maxLength` ids, the last one `</s>`.
///
/// ```swift
/// let tokenizer = try Tokenizer(contentsOf: URL(fileURLWithPath: "tokenizer.json"))
/// let ids = try tokenizer.encode(WanPromptCleaner.clean("A cat &amp; a dog"))
/// ```
public struct Tokenizer: Sendable {
    /// Which file the tokenizer came from, and so which library's behaviour it reproduces.
    ///
    /// The libraries differ on a few inputs: `tokenizers` matches special and user-defined tokens
    /// written in the text (`</s>`, `<pad>`) and its vocabulary's `<unk>` and `<0xNN>` pieces, while
    /// `sentencepiece` treats them as plain text; `tokenizers` applies the precompiled map per
    /// grapheme (a short grapheme is replaced whole by its first match), `sentencepiece` by longest
    /// match; `tokenizers` strips trailing Unicode whitespace, `sentencepiece` only what its map
    /// turns into spaces.
    public enum Format: String, Sendable {
        /// HF tokenizers' `tokenizer.json`.
        case huggingFace = "tokenizer.json"
        /// SentencePiece's `spiece.model` protobuf.
        case sentencePiece = "spiece.model"
    }

    private enum Engine: Sendable {
        case huggingFace(HFTokenizer)
        case sentencePiece(SentencePieceModel)
    }

    private let engine: Engine

    /// The context length of umT5 in Wan: 511 tokens and `</s>`.
    public static let defaultMaxLength = 512

    /// Loads `url`, detecting the format from the content: a JSON object is `tokenizer.json`,
    /// anything else is parsed as a SentencePiece model.
    /// - Throws: `ReelError.badFile` naming the file and the problem.
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory)
            let reason = !exists ? "no such file" : isDirectory.boolValue ? "is a folder, not a tokenizer file"
                : "cannot be read (\(error.localizedDescription))"
            throw ReelError.badFile(path: url.path, message: reason)
        }
        do { engine = try Self.engine(data) } catch let error as ReelTokenizerError {
            throw ReelError.badFile(path: url.path, message: "\(error)")
        }
    }

    /// Parses the bytes of a `tokenizer.json` or a `spiece.model`, detected by content.
    /// - Throws: `ReelError.badFile` (with path `<data>`) if they are neither.
    public init(data: Data) throws {
        do { engine = try Self.engine(data) } catch let error as ReelTokenizerError {
            throw ReelError.badFile(path: "<data>", message: "\(error)")
        }
    }

    private static func engine(_ data: Data) throws -> Engine {
        let firstByte = data.first { ![0x20, 0x09, 0x0A, 0x0D, 0xEF, 0xBB, 0xBF].contains($0) }
        if firstByte == UInt8(ascii: "{") {
            do { return .huggingFace(try HFTokenizer(data: data)) } catch let error as ReelTokenizerError {
                throw ReelTokenizerError.malformed("looks like JSON but is not a tokenizer.json Reel can read: \(error)")
            }
        }
        guard !data.isEmpty else { throw ReelTokenizerError.malformed("the file is empty, not a tokenizer") }
        do { return .sentencePiece(try SentencePieceModel(bytes: [UInt8](data))) } catch let error as ReelTokenizerError {
            throw ReelTokenizerError.malformed("neither a tokenizer.json (no JSON object) nor a SentencePiece model: \(error)")
        }
    }

    /// The file format, and so the library whose behaviour this tokenizer reproduces.
    public var format: Format {
        switch engine {
        case .huggingFace: .huggingFace
        case .sentencePiece: .sentencePiece
        }
    }

    /// The number of pieces in the model's vocabulary (added tokens past it not counted).
    public var vocabularySize: Int {
        switch engine {
        case let .huggingFace(t): t.model.pieces.count
        case let .sentencePiece(m): m.model.pieces.count
        }
    }

    /// The id of the unknown piece.
    public var unkId: Int32 {
        switch engine {
        case let .huggingFace(t): t.model.unkId
        case let .sentencePiece(m): m.model.unkId
        }
    }

    /// The id of `</s>`, if the model has one.
    public var eosId: Int32? {
        switch engine {
        case let .huggingFace(t): t.model.pieceToId[Array("</s>".utf8)]
        case let .sentencePiece(m): m.eosId
        }
    }

    /// The id of `<pad>`, if the model has one.
    public var padId: Int32? {
        switch engine {
        case let .huggingFace(t): t.model.pieceToId[Array("<pad>".utf8)]
        case let .sentencePiece(m): m.padId
        }
    }

    /// The string of `id`: its vocabulary piece, or the content of an added token past the
    /// vocabulary (tokenizer.json); nil if no such id exists.
    public func piece(for id: Int32) -> String? {
        switch engine {
        case let .huggingFace(t):
            if let token = t.addedToken(id) { return String(decoding: token.content, as: UTF8.self) }
            return id >= 0 && Int(id) < t.model.pieces.count ? t.model.pieces[Int(id)] : nil
        case let .sentencePiece(m):
            return id >= 0 && Int(id) < m.model.pieces.count ? m.model.pieces[Int(id)] : nil
        }
    }

    /// The ids of `text`, ending in `</s>`: for `tokenizer.json` its post-processor's template,
    /// for `spiece.model` the pieces and `eos_id`. With `maxLength`, the pieces are cut so that the
    /// result, special tokens included, has at most `maxLength` ids (HF's `truncation=True`).
    /// - Throws: `ReelError.input` if `maxLength` leaves no room for the special tokens.
    public func encode(_ text: String, maxLength: Int? = Tokenizer.defaultMaxLength) throws -> [Int32] {
        switch engine {
        case let .huggingFace(t):
            var sequence = t.encodeSequence(text)
            if let maxLength {
                let room = maxLength - t.specialTokenCount
                guard room >= 0 else {
                    throw ReelError.input("max length \(maxLength) is shorter than the \(t.specialTokenCount) special tokens the tokenizer adds")
                }
                if sequence.count > room { sequence.removeLast(sequence.count - room) }
            }
            return t.postProcess(sequence)
        case let .sentencePiece(m):
            var ids = m.encode(text)
            let special = m.eosId == nil ? 0 : 1
            if let maxLength {
                guard maxLength >= special else {
                    throw ReelError.input("max length \(maxLength) leaves no room for </s>")
                }
                if ids.count > maxLength - special { ids.removeLast(ids.count - (maxLength - special)) }
            }
            if let eos = m.eosId { ids.append(eos) }
            return ids
        }
    }

    /// Text for `ids`, as the library of ``format`` decodes it (`tokenizers`' `decode` with
    /// `skip_special_tokens`, or `sentencepiece`'s `decode`, which always drops control pieces).
    /// Ids out of range are skipped.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = true) -> String {
        switch engine {
        case let .huggingFace(t): t.decode(ids, skipSpecialTokens: skipSpecialTokens)
        case let .sentencePiece(m): m.decode(ids)
        }
    }
}

extension Tokenizer {
    /// The ids Wan feeds umT5 for a prompt: ``WanPromptCleaner/clean(_:)``, then ``encode(_:maxLength:)``
    /// with 512 (511 pieces and `</s>`).
    public func wanPromptIds(_ prompt: String) throws -> [Int32] {
        try encode(WanPromptCleaner.clean(prompt), maxLength: Tokenizer.defaultMaxLength)
    }
}
