import Foundation

/// The tokenizer as Wan's T5 encoder uses it (`HuggingfaceTokenizer(name, seq_len=512,
/// clean='whitespace')`): each prompt cleaned by ``WanPromptCleaner``, then encoded to at most
/// 512 ids ending in `</s>`. Padding is left to the caller (umT5 runs only the real tokens).
///
/// A class, so that it can serve as the pipeline's prompt tokenizer (its `ids(for:)` matches
/// `ReelPipeline.PromptTokenizer`).
public final class WanTokenizer: Sendable {
    /// The underlying tokenizer.
    public let tokenizer: Tokenizer

    /// Wraps a loaded tokenizer.
    public init(_ tokenizer: Tokenizer) {
        self.tokenizer = tokenizer
    }

    /// Loads `tokenizer.json` or `spiece.model` from `url`.
    /// - Throws: `ReelError.badFile` naming the file and the problem.
    public convenience init(contentsOf url: URL) throws {
        self.init(try Tokenizer(contentsOf: url))
    }

    /// The ids umT5 sees for `text`: cleaned, at most 511 pieces, then `</s>`.
    public func ids(for text: String) throws -> [Int32] {
        try tokenizer.wanPromptIds(text)
    }
}
