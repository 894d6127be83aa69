/// What can go wrong while loading or using a tokenizer. `Tokenizer` wraps these into
/// `ReelError.badFile` with the path, so a person sees which file and what is wrong with it.
enum ReelTokenizerError: Error, CustomStringConvertible {
    /// The file is not a tokenizer Reel can read, or it is damaged.
    case malformed(String)
    /// The file is a valid tokenizer that uses a feature Reel does not implement.
    case unsupported(String)

    var description: String {
        switch self {
        case let .malformed(message): message
        case let .unsupported(message): "unsupported: \(message)"
        }
    }
}
