import ArgumentParser
import ReelModels

/// `--fp8` or `--int8`, and `--fp8-layers`: the DiT's block linears quantized (W8A8: weights per output
/// channel at load, activations per token as they are made; `WanDiT.quantized`).
struct QuantizationOptions: ParsableArguments {
    @Flag(name: .customLong("fp8"),
          help: ArgumentHelp("Run the DiT's FFN in FP8 E4M3 (weights per output channel, activations per token).",
                             discussion: "Faster on GPUs with FP8 tensor cores (compute capability 8.9+: Ada, Hopper) and half the weight memory; outputs differ from the bf16 model's by FP8 rounding. On the CPU the same arithmetic is emulated (slower)."))
    var fp8 = false
    @Flag(name: .customLong("int8"),
          help: ArgumentHelp("Run the DiT's FFN in INT8 (W8A8: symmetric codes, weights per output channel, activations per token).",
                             discussion: "For GPUs without FP8 (Ampere, compute capability 8.0+: the A100, RTX 30xx): int8 tensor cores with exact int32 sums, half the weight memory; outputs differ from the bf16 model's by INT8 rounding. On the CPU the same arithmetic is emulated (slower). Not with --fp8."))
    var int8 = false
    @Option(help: ArgumentHelp("With --fp8 or --int8: ffn (the default) or all (every linear of the DiT's blocks: the attention projections too, for the least memory).",
                               valueName: "ffn|all"))
    var fp8Layers: QuantizedLayers?

    func validate() throws {
        if fp8 && int8 { throw ValidationError("--fp8 and --int8 are two formats for the same layers: give one.") }
        // --fp8-layers without a format is a mistake, not a silent no-op.
        if fp8Layers != nil && !fp8 && !int8 {
            throw ValidationError("--fp8-layers chooses which layers --fp8 or --int8 quantizes: give one of them too.")
        }
    }

    /// The DiT's quantized layers, nil for none.
    var quantization: LinearQuantization? {
        guard fp8 || int8 else { return nil }
        return LinearQuantization(format: int8 ? .int8 : .fp8, layers: fp8Layers ?? .feedForward)
    }
}
