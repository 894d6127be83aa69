import ArgumentParser
import Foundation
import ReelModels
import ReelPipeline

/// Where the model's parts come from: a folder, and single files that override its parts.
struct ModelOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Model folder (default: Models/tiny when it exists).",
                               discussion: "Recognised by its files: Reel's own layout, Wan-AI/Wan2.1-T2V-1.3B or -14B, their -Diffusers form, LongLive-1.3B (models/longlive_base.pt, models/lora.pt), Self-Forcing and CausVid checkpoints; docs/model-folders.md. `reel inspect DIR` says what it found."))
    var model: String?
    @Option(help: ArgumentHelp("Base folder for the parts a LongLive, Self-Forcing or CausVid folder lacks (text encoder, tokenizer, VAE): Wan2.1; LongLive 2.0: Wan2.2-TI2V-5B.",
                               discussion: "Default: wan_models/Wan2.1-T2V-1.3B inside or beside the --model folder, where those projects' instructions download it."))
    var base: String?
    @Option(help: "DiT weights (overrides the model folder's).")
    var dit: String?
    @Option(help: "LoRA to merge into the DiT at load (LongLive lora.pt or PEFT safetensors).")
    var lora: String?
    @Option(help: "Attention heads of the DiT (default: from the model folder, else dim / 128).")
    var heads: Int?
    @Flag(inversion: .prefixedNo,
          help: "The checkpoint's EMA generator (generator_ema) or not (default: as its authors run it: Self-Forcing's EMA, LongLive's and CausVid's generator).")
    var ema: Bool?
    @OptionGroup var quantizationOptions: QuantizationOptions

    /// The DiT's quantized layers, nil for none (`--fp8` or `--int8`, `--fp8-layers`).
    var quantization: LinearQuantization? { quantizationOptions.quantization }

    @Option(name: .customLong("kv-cache"),
            help: ArgumentHelp("How the DiT's self-attention KV cache stores keys and values: bf16 (the model's dtype; default) or fp8.",
                               discussion: "fp8: E4M3 values with a float32 scale per token and head, dequantized one layer at a time before attention: about half the cache's memory, at a small error (the README's FP8 paragraph). LongLive 1.0's schedule only (not LongLive 2.0 models or video-to-video).",
                               valueName: "bf16|fp8"))
    var kvCache = KVCacheStorage.model

    @Option(help: ArgumentHelp("How the DiT's self-attention computes: bf16 (the model's dtype; default) or fp8.",
                               discussion: "fp8: Q, K, V, the softmax probabilities and the output in FP8 E4M3 with one scale per tensor, through cuDNN's FP8 attention (cuDNN >= 9.13, compute capability >= 9.0; CUDA only), at an error `reel parity --attention fp8` reports (docs/perf-notes.md, FP8 attention). Cross-attention stays in bf16.",
                               valueName: "bf16|fp8"))
    var attention = AttentionPrecision.model

    @Option(help: "umT5 text encoder weights (Wan .pth, transformers or Reel safetensors).")
    var textEncoder: String?
    @Option(help: "Tokenizer: tokenizer.json or spiece.model.")
    var tokenizer: String?
    @Option(help: "Wan VAE weights for decoding.")
    var vae: String?
    @Option(help: "TAEHV tiny decoder weights (faster decoding; used instead of the VAE).")
    var tinyDecoder: String?

    /// Which decoder a folder with both (a Wan2.1 folder beside taew2_1.pth) decodes with.
    enum Decoder: String, ExpressibleByArgument, CaseIterable { case vae, tiny }
    @Option(help: "Decoder when the model has both: vae (Wan2.1 VAE) or tiny (TAEHV; default, unless only --vae is given).")
    var decoder: Decoder?

    func validate() throws {
        if let heads, heads <= 0 { throw ValidationError("--heads must be positive, got \(heads).") }
        for (flag, path) in [("--model", model), ("--base", base), ("--dit", dit), ("--lora", lora), ("--text-encoder", textEncoder),
                             ("--tokenizer", tokenizer), ("--vae", vae), ("--tiny-decoder", tinyDecoder)] {
            if let path, !FileManager.default.fileExists(atPath: path) {
                throw ValidationError("\(flag): \(path) does not exist.")
            }
        }
    }

    /// The folder's files (the shipped tiny model by default) with the single-file options on top.
    func resolve() throws -> ModelFiles {
        let given = ModelFiles(dit: dit, lora: lora, textEncoder: textEncoder, tokenizer: tokenizer, vae: vae,
                               tinyDecoder: tinyDecoder, heads: heads)
        var files = try ModelFiles.resolve(model: model, base: base, given: given)
        if let ema { files.ema = ema }
        switch decoder ?? (vae != nil && tinyDecoder == nil ? .vae : nil) {
        case .vae?:
            guard files.vae != nil else { throw files.missing(.vae, option: "--vae FILE") }
            files.tinyDecoder = nil
        case .tiny?:
            guard files.tinyDecoder != nil else { throw files.missing(.tinyDecoder, option: "--tiny-decoder FILE") }
            files.vae = nil
        case nil:
            break
        }
        return files
    }
}
extension QuantizedLayers: ExpressibleByArgument {}
extension KVCacheStorage: ExpressibleByArgument {}
extension AttentionPrecision: ExpressibleByArgument {}
