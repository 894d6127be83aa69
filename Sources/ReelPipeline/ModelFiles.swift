import Foundation
import ReelCore
import ReelIO
import ReelModels

/// Where the parts of a model live. A model folder (such as `Models/tiny/`) holds
/// `dit.safetensors` (optional `lora.safetensors`), `text_encoder.safetensors`, `tokenizer.json` or
/// `spiece.model`, and a decoder: `vae.safetensors` (Wan VAE) or `taehv.safetensors` (tiny decoder);
/// `reel.json` may give `{"heads": N}` for DiTs whose head count is not dim / 128, and the video
/// `"size"` (`"WIDTHxHEIGHT"`) and `"fps"` the model was trained for.
/// Each path can also be given on its own (a LongLive `longlive_base.pt`, a diffusers folder, ...).
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

    public init(dit: String? = nil, lora: String? = nil, textEncoder: String? = nil, tokenizer: String? = nil,
                vae: String? = nil, tinyDecoder: String? = nil, heads: Int? = nil, size: String? = nil, fps: Int? = nil) {
        self.dit = dit; self.lora = lora; self.textEncoder = textEncoder; self.tokenizer = tokenizer
        self.vae = vae; self.tinyDecoder = tinyDecoder; self.heads = heads; self.size = size; self.fps = fps
    }

    /// The files of a model folder (missing ones stay nil).
    public init(folder: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw ReelError.input("model folder \(folder) does not exist")
        }
        func file(_ names: String...) -> String? {
            names.map { (folder as NSString).appendingPathComponent($0) }.first { FileManager.default.fileExists(atPath: $0) }
        }
        self.init(dit: file("dit.safetensors"), lora: file("lora.safetensors"),
                  textEncoder: file("text_encoder.safetensors"), tokenizer: file("tokenizer.json", "spiece.model"),
                  vae: file("vae.safetensors"), tinyDecoder: file("taehv.safetensors"))
        if let config = file("reel.json") {
            guard let data = FileManager.default.contents(atPath: config),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ReelError.badFile(path: config, message: "not a JSON object")
            }
            heads = json["heads"] as? Int
            size = json["size"] as? String
            fps = json["fps"] as? Int
        }
    }

    /// Overrides the folder's files with the ones given explicitly.
    public func overriding(with other: ModelFiles) -> ModelFiles {
        ModelFiles(dit: other.dit ?? dit, lora: other.lora ?? lora, textEncoder: other.textEncoder ?? textEncoder,
                   tokenizer: other.tokenizer ?? tokenizer, vae: other.vae ?? vae,
                   tinyDecoder: other.tinyDecoder ?? tinyDecoder, heads: other.heads ?? heads,
                   size: other.size ?? size, fps: other.fps ?? fps)
    }
}

extension WanDiT {
    /// Loads a DiT from a weight file of any supported format and layout. LongLive checkpoints keep the
    /// model under `generator` (or `generator_ema` with `ema`, or `model`); that level is picked here.
    public static func load(path: String, lora: String? = nil, heads: Int? = nil, ema: Bool = false,
                            backend: any Backend, dtype: DType = .f32) throws -> WanDiT {
        let (source, loraSource) = try openCheckpoint(path: path, lora: lora, ema: ema)
        let file = try WeightFiles.open(path)
        let recorded = file.metadata["heads"].flatMap(Int.init)
        var model = try load(from: source, heads: heads ?? recorded, lora: loraSource, backend: backend, dtype: dtype)
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
