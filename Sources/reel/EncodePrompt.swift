import ArgumentParser
import Foundation
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
import ReelPipeline

/// `reel encode-prompt`: what the text encoder makes of a prompt, for inspection.
struct EncodePrompt: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode-prompt",
        abstract: "Run the umT5 text encoder on prompts and print what it produces.",
        discussion: """
        Prints per prompt: the token count (Wan's cleaning, 511 pieces + </s>), the embedding's shape, \
        its mean, standard deviation and first values, and the time taken. With -o the embeddings are \
        saved as safetensors ('prompt.N', [tokens, dim]); the DiT pads them with zeros to 512 tokens.
        """
    )

    @OptionGroup var models: ModelOptions
    @Option(name: [.short, .customLong("output")], help: "Save the embeddings to this safetensors file.")
    var output: String?
    @Argument(help: "Prompts to encode.")
    var prompts: [String] = []

    func validate() throws {
        if prompts.isEmpty { throw ValidationError("Give at least one prompt.") }
        if prompts.contains(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }) {
            throw ValidationError("Prompts must not be empty.")
        }
    }

    func run() async throws {
        do {
            let files = try models.resolve()
            guard let encoderPath = files.textEncoder else { throw files.missing(.textEncoder, option: "--text-encoder FILE") }
            guard let tokenizerPath = files.tokenizer else { throw files.missing(.tokenizer, option: "--tokenizer FILE") }
            let backend = CPUBackend()
            let tok = try Tokenizer(contentsOf: URL(fileURLWithPath: tokenizerPath))
            let encoder = try UMT5Encoder.load(from: WeightFileTensors(path: encoderPath), backend: backend)
            var writer = SafetensorsWriter()
            for (i, prompt) in prompts.enumerated() {
                let clock = ContinuousClock(), start = clock.now
                let ids = try tok.wanPromptIds(prompt)
                let e = try encoder.encode(ids)
                let values = try e.toFloats()
                let elapsed = clock.now - start
                let mean = values.reduce(0, +) / Float(values.count)
                let std = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(values.count)).squareRoot()
                print("prompt \(i): \(ids.count) tokens -> \(e.shape), mean \(String(format: "%.4f", mean)), "
                      + "std \(String(format: "%.4f", std)), first [\(values.prefix(4).map { String(format: "%.4f", $0) }.joined(separator: ", "))], "
                      + "\(elapsed.formatted(.units(allowed: [.milliseconds], fractionalPart: .show(length: 1))))")
                try writer.add("prompt.\(i)", e)
            }
            if let output {
                writer.metadata["prompts"] = prompts.joined(separator: "\n")
                try writer.write(to: output)
                print("wrote \(prompts.count) embeddings to \(output)")
            }
        } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        }
    }
}
