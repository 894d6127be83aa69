import Foundation
import ReelCore
import ReelIO
import ReelModels

/// Where the parts of a model live: what `--model DIR` resolves to (`ModelFolder` recognises the
/// folder: Reel's own layout, Wan2.1's, diffusers', LongLive / Self-Forcing / CausVid checkpoints on a
/// Wan2.1 base), with single files given on their own (`--dit`, `--text-encoder`, ...) on top.
/// Reel's own folder (such as `Models/tiny/`) holds `dit.safetensors` (optional `lora.safetensors`),
/// `text_encoder.safetensors`, `tokenizer.json` or `spiece.model`, and a decoder: `vae.safetensors` (Wan VAE)
/// or `taehv.safetensors` (tiny decoder); `reel.json` may give `{"heads": N}` for DiTs whose head count is
/// not dim / 128, and the video `"size"` (`"WIDTHxHEIGHT"`) and `"fps"` the model was trained for.
public struct ModelFiles: Sendable, Equatable {
    public var dit: String?
    public var lora: String?
    public var textEncoder: String?
    public var tokenizer: String?
    public var vae: String?
    public var tinyDecoder: String?
    public var heads: Int?
    /// The video size the model was trained for, `WIDTHxHEIGHT` (`reel.json` "size").
    public var size: String?
    /// Its frame rate (`reel.json` "fps").
    public var fps: Int?
    /// Video-to-video's default noise scale for this model (`reel.json` "noise_scale"; nil: StreamDiffusionV2's 0.8).
    public var noiseScale: Double?
    /// Load the checkpoint's EMA generator (`generator_ema`): the folder's authors run it, or `--ema`.
    public var ema = false
    /// The folder the paths came from, for messages that say what was found.
    public var origin: ModelFolder?

    public init(dit: String? = nil, lora: String? = nil, textEncoder: String? = nil, tokenizer: String? = nil,
                vae: String? = nil, tinyDecoder: String? = nil, heads: Int? = nil, size: String? = nil, fps: Int? = nil) {
        self.dit = dit; self.lora = lora; self.textEncoder = textEncoder; self.tokenizer = tokenizer
        self.vae = vae; self.tinyDecoder = tinyDecoder; self.heads = heads; self.size = size; self.fps = fps
    }

    /// The files of a model folder of any recognised layout (missing ones stay nil).
    public init(folder: String, base: String? = nil) throws {
        self = try ModelFolder.recognise(folder, base: base).files
    }

    /// The one way every command resolves its model: the folder `model` (else `Models/tiny` when it
    /// exists) recognised with its `base`, and the single files of `given` on top.
    public static func resolve(model: String?, base: String? = nil, given: ModelFiles = ModelFiles()) throws -> ModelFiles {
        let shipped = FileManager.default.fileExists(atPath: "Models/tiny") ? "Models/tiny" : nil
        guard let folder = model ?? shipped else {
            if let base { return try ModelFiles(folder: base).overriding(with: given) }
            return given
        }
        return try ModelFiles(folder: folder, base: base).overriding(with: given)
    }

    /// Overrides the folder's files with the ones given explicitly.
    public func overriding(with other: ModelFiles) -> ModelFiles {
        var out = ModelFiles(dit: other.dit ?? dit, lora: other.lora ?? lora, textEncoder: other.textEncoder ?? textEncoder,
                             tokenizer: other.tokenizer ?? tokenizer, vae: other.vae ?? vae,
                             tinyDecoder: other.tinyDecoder ?? tinyDecoder, heads: other.heads ?? heads,
                             size: other.size ?? size, fps: other.fps ?? fps)
        out.ema = ema || other.ema
        out.noiseScale = other.noiseScale ?? noiseScale
        out.origin = origin
        return out
    }

    /// The DiT's architecture from its file's shapes alone (no weight is read), with the folder's heads: what a
    /// command checks a request against before loading.
    public func ditConfig(backend: any Backend) throws -> WanDiTConfig {
        guard let path = dit else { throw missing(.dit, option: "--dit FILE") }
        let (source, _) = try WanDiT.openCheckpoint(path: path, ema: ema)
        let layout = WanDiT.Layout.detect(source.keys)
        var config = try WanDiT.detectConfig(try WeightBinder(source: source, rules: layout.rules, backend: backend, dtype: .f32))
        if let heads { config.heads = heads }
        return config
    }

    /// The error for a missing part: what the folder held and what to give.
    public func missing(_ role: ModelFolder.Role, option: String) -> ReelError {
        if let origin { return origin.missingError(role, option: option) }
        return .input("no \(role.rawValue): give --model FOLDER or \(option)")
    }
}

extension WanDiT {
    /// Loads a DiT from a weight file of any supported format and layout. LongLive checkpoints keep the
    /// model under `generator` (or `generator_ema` with `ema`, or `model`); that level is picked here.
    /// With `communicator`, the model is spread over its ranks by `parallelism` (`loadSequenceParallel` or
    /// `loadTensorParallel`; `backend` is then unused: rank 0's stream takes its place).
    /// `quantization` and `streaming`: as `load(from:...)` (one device; a sequence-parallel model quantizes after).
    public static func load(path: String, lora: String? = nil, heads: Int? = nil, ema: Bool = false,
                            backend: any Backend, communicator: (any Communicator)? = nil,
                            parallelism: DiTParallelScheme = .sequence, dtype: DType = .f32, quantization: LinearQuantization? = nil,
                            streaming: BlockStreaming? = nil) throws -> WanDiT {
        let (source, loraSource) = try openCheckpoint(path: path, lora: lora, ema: ema)
        let file = try WeightFiles.open(path)
        let recorded = file.metadata["heads"].flatMap(Int.init)
        if communicator != nil, streaming != nil {
            throw ReelError.input("a DiT spread over several devices (--devices) streams no blocks: drop --gpu-memory "
                                  + "or --devices")
        }
        var model = try communicator.map {
            try loadParallel(parallelism, from: source, heads: heads ?? recorded, lora: loraSource, communicator: $0,
                             dtype: dtype)
        } ?? load(from: source, heads: heads ?? recorded, lora: loraSource, backend: backend, dtype: dtype,
                  quantization: quantization, streaming: streaming)
        if let quantization { model = try model.quantized(quantization) }
        // The cross-attention's row count (Wan: 512) shapes no weight; a file may record another.
        if let textLength = file.metadata["text_len"] {
            guard let n = Int(textLength), n >= 1 else {
                throw ReelError.badFile(path: path, message: "metadata text_len '\(textLength)' is not a positive integer")
            }
            model = model.withTextLength(n)
        }
        return model
    }

    /// A checkpoint's DiT tensors (LongLive's sub-dictionary picked) and its LoRA's.
    public static func openCheckpoint(path: String, lora: String? = nil, ema: Bool = false) throws
        -> (any TensorSource, (any TensorSource)?) {
        let file = try WeightFiles.open(path)
        let tops = Set(file.topLevelNames)
        var scoped: any WeightFile = file
        for scope in (ema ? ["generator_ema", "generator", "model"] : ["generator", "generator_ema", "model"])
        where tops.contains(scope) && !tops.contains("blocks") {
            scoped = file.scoped(to: scope)
            break
        }
        let loraSource: (any TensorSource)? = try lora.map { path in
            let f = try WeightFiles.open(path)
            return WeightFileTensors(f.topLevelNames == ["generator_lora"] ? f.scoped(to: "generator_lora") : f)
        }
        return (WeightFileTensors(scoped), loraSource)
    }
}
