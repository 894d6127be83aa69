import ArgumentParser
import Foundation
import ReelCore
import ReelModels

/// `reel tokenize`: the umT5 token ids of each text, one line per text.
struct Tokenize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of each text, one line per text.",
        discussion: """
            The ids end in </s> as umT5 sees them. FILE may be a HF tokenizer.json or a SentencePiece \
            spiece.model; the format is detected from the content.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The tokenizer: tokenizer.json or spiece.model.", valueName: "FILE"))
    var tokenizer: String

    @Flag(name: .long, help: "Clean each text as Wan does first (ftfy fixes, HTML unescape twice, whitespace collapse).")
    var clean = false

    @Option(name: .long, help: "At most this many ids, </s> included; 0 for no limit.")
    var maxLength = 512

    @Flag(name: .long, help: "Print the pieces (the vocabulary's strings) instead of the ids.")
    var pieces = false

    @Flag(name: .long, help: "Also print to standard error how long encoding each text takes (median of 200 runs).")
    var time = false

    @Argument(help: "The texts to tokenize.")
    var texts: [String] = []

    func validate() throws {
        guard !texts.isEmpty else { throw ValidationError("Give at least one TEXT to tokenize.") }
        guard maxLength >= 0 else { throw ValidationError("--max-length must be 0 (no limit) or positive, not \(maxLength).") }
    }

    func run() async throws {
        let tokenizer = try Tokenizer(contentsOf: URL(fileURLWithPath: tokenizer))
        for text in texts {
            let input = clean ? WanPromptCleaner.clean(text) : text
            let ids = try tokenizer.encode(input, maxLength: maxLength == 0 ? nil : maxLength)
            if pieces {
                print(ids.map { tokenizer.piece(for: $0) ?? "<\($0)>" }.joined(separator: " "))
            } else {
                print(ids.map(String.init).joined(separator: " "))
            }
            if time { try printTiming(tokenizer, input, ids.count) }
        }
    }

    private func printTiming(_ tokenizer: Tokenizer, _ text: String, _ count: Int) throws {
        let clock = ContinuousClock()
        var samples: [Duration] = []
        for _ in 0..<200 {
            let start = clock.now
            _ = try tokenizer.encode(text, maxLength: maxLength == 0 ? nil : maxLength)
            samples.append(clock.now - start)
        }
        samples.sort()
        let median = samples[samples.count / 2]
        let micros = median.seconds * 1e6
        FileHandle.standardError.write(Data("\(count) ids from \(text.utf8.count) bytes: \(String(format: "%.1f", micros)) us (median of 200)\n".utf8))
    }
}
