import ArgumentParser
import Foundation
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
import ReelPipeline

/// `reel convert`: a DiT checkpoint of any supported layout (LongLive .pt with its LoRA, diffusers,
/// Wan) to Reel's safetensors: canonical Wan names, LoRA merged, the head count in the metadata.
struct Convert: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a DiT checkpoint (LongLive, diffusers, Wan) to Reel safetensors, merging a LoRA.",
        discussion: """
        The result loads with `reel generate --dit OUT` (or as dit.safetensors in a model folder) without \
        --lora. LongLive's longlive_base.pt keeps the model under 'generator' (--ema: 'generator_ema'; a Self-Forcing \
        folder defaults to it); \
        its lora.pt under 'generator_lora'. The output is checked by loading it back.
        """
    )

    @Option(help: "A model folder of any recognised layout (docs/model-folders.md): its DiT and LoRA.")
    var model: String?
    @Option(help: "DiT checkpoint: safetensors, diffusers folder or index, or a PyTorch .pt/.pth (overrides --model's).")
    var dit: String?
    @Option(help: "LoRA to merge (LongLive lora.pt or PEFT safetensors; overrides --model's).")
    var lora: String?
    @Option(help: "LoRA scale alpha / rank (LongLive: 256 / 256 = 1).")
    var loraScale: Float = 1
    @Flag(inversion: .prefixedNo, help: "The checkpoint's EMA generator (generator_ema) or not (default: Self-Forcing's EMA, others' generator).")
    var ema: Bool?
    @Option(help: "Attention heads to record (default: the folder's config.json, else dim / 128).")
    var heads: Int?
    @Option(help: "Storage dtype of the output: f32, bf16 or f16.")
    var dtype = "bf16"
    @Option(name: [.short, .customLong("output")], help: "Output safetensors file.")
    var output: String

    mutating func validate() throws {
        guard ["f32", "bf16", "f16"].contains(dtype) else { throw ValidationError("--dtype must be f32, bf16 or f16, got \(dtype).") }
        if model == nil && dit == nil { throw ValidationError("Give --model FOLDER or --dit FILE.") }
        for (flag, path) in [("--model", model), ("--dit", dit), ("--lora", lora)] {
            if let path, !FileManager.default.fileExists(atPath: path) { throw ValidationError("\(flag): \(path) does not exist.") }
        }
        if let heads, heads <= 0 { throw ValidationError("--heads must be positive.") }
    }

    func run() async throws {
        do {
            let backend = CPUBackend()
            let type = DType(rawValue: dtype) ?? .bf16
            let started = Date()
            let given = ModelFiles(dit: dit, lora: lora, heads: heads)
            // Only --model's folder: the shipped tiny model is no default here.
            var files = try model.map { try ModelFiles(folder: $0).overriding(with: given) } ?? given
            if let ema { files.ema = ema }
            guard let dit = files.dit else { throw files.missing(.dit, option: "--dit FILE") }
            let (source, loraSource) = try WanDiT.openCheckpoint(path: dit, lora: files.lora, ema: files.ema)
            // Merging happens in float32; the result is stored in `type`.
            let tensors = try WanDiT.canonicalTensors(from: source, lora: loraSource, loraScale: loraScale,
                                                      backend: backend, dtype: .f32)
            var writer = SafetensorsWriter()
            for (name, t) in tensors { try writer.add(name, type == .f32 ? t : try backend.cast(t, to: type)) }
            let dim = tensors.first { $0.0 == "patch_embedding.weight" }?.1.shape[0] ?? 0
            writer.metadata = ["format": "reel", "model": "causal-wan-dit", "heads": String(files.heads ?? max(1, dim / 128)),
                               "source": (dit as NSString).lastPathComponent, "lora": files.lora.map { ($0 as NSString).lastPathComponent } ?? ""]
            try writer.write(to: output)
            let check = try WanDiT.load(path: output, heads: files.heads, backend: backend)
            FileHandle.standardError.write(Data(String(format: "wrote %@: %d tensors, %d layers, dim %d, %@ (%.1f s)\n",
                                                       output, tensors.count, check.config.layers, check.config.dim, dtype,
                                                       Date().timeIntervalSince(started)).utf8))
        } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        }
    }
}
