import ArgumentParser

@main
struct Reel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reel",
        abstract: "Real-time streaming video generation from a stream of text prompts.",
        groupedSubcommands: [
            CommandGroup(name: "User", subcommands: [
                Generate.self, Serve.self, Eval.self, Bench.self, Convert.self, Decode.self, Inspect.self, Devices.self,
            ]),
            CommandGroup(name: "Developer tools", subcommands: [
                Parity.self, CheckOps.self, CheckComm.self, BenchOps.self, BenchText.self, EncodePrompt.self, Tokenize.self,
            ]),
        ]
    )
}
