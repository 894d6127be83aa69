import ArgumentParser

@main
struct Reel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reel",
        abstract: "Real-time streaming video generation from a stream of text prompts.",
        subcommands: [Generate.self, Eval.self, Serve.self, Bench.self, BenchText.self, Parity.self, Convert.self, EncodePrompt.self, Inspect.self, Tokenize.self, Decode.self, BenchOps.self, Devices.self, CheckOps.self]
    )
}
