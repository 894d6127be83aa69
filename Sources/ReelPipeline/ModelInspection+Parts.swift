import Foundation
import ReelCore
import ReelIO
import ReelModels

// How `ModelInspection` reads each part: from the weight files' headers and shapes only.
extension ModelInspection {
    /// The DiT: the checkpoint entry it comes from, its key layout, and the architecture from its shapes
    /// (heads from the folder's config.json or reel.json), checked against config.json.
    mutating func readDiT(_ r: inout PartReport, backend: any Backend) throws {
        let ema = folder.files.ema
        let file = try WeightFiles.open(r.part.path)
        let (source, _) = try WanDiT.openCheckpoint(path: r.part.path, ema: ema)
        r.describe(file, source: source)
        let layout = WanDiT.Layout.detect(source.keys)
        let names = switch layout {
        case .wan: "Wan key names"
        case .longLive: "Wan key names under \"model.\" (the training wrapper's)"
        case .diffusers: "diffusers key names"
        }
        r.layout = (Self.scope(of: file, ema: ema).map { "\"\($0)\" of the checkpoint, " } ?? "") + names
        var config = try WanDiT.detectConfig(try WeightBinder(source: source, rules: layout.rules, backend: backend, dtype: .f32))
        if let heads = folder.heads { config.heads = heads }
        if let n = file.metadata["text_len"].flatMap(Int.init) { config.textLength = n }
        dit = config
        r.architecture = "dim \(config.dim), \(config.layers) layers, \(config.heads) heads x \(config.dim / max(config.heads, 1)), "
            + "ffn \(config.ffnDim), text dim \(config.textDim)"
        problems += Self.disagreements(folder.ditConfig, config)
    }

    /// A LoRA: its rank and the layers it adapts.
    static func readLoRA(_ r: inout PartReport, dit: String?) throws {
        let file = try WeightFiles.open(r.part.path)
        let (_, lora) = try WanDiT.openCheckpoint(path: dit ?? r.part.path, lora: r.part.path)
        guard let source = lora else { throw ReelError.weights(message: "no LoRA tensors") }
        r.describe(file, source: source)
        let downs = source.keys.filter { $0.hasSuffix("lora_A.weight") }
        let rank = downs.first.flatMap { source.shape(of: $0)?[0] } ?? 0
        r.layout = (file.topLevelNames == ["generator_lora"] ? "\"generator_lora\" of the checkpoint, " : "") + "PEFT key names"
        r.architecture = "rank \(rank) on \(downs.count) linear layers (merged into the DiT at load)"
    }

    static func readTextEncoder(_ r: inout PartReport, backend: any Backend) throws -> UMT5Config {
        let file = try WeightFiles.open(r.part.path)
        let source = WeightFileTensors(file)
        r.describe(file, source: source)
        let c = try UMT5Encoder.detectConfig(from: source, backend: backend)
        r.layout = source.keys.contains { $0.hasPrefix("encoder.block.") } ? "transformers key names" : "Wan t5.py key names"
        r.architecture = "umT5: dim \(c.dim), \(c.layers) layers, \(c.heads) heads x \(c.headDim), ffn \(c.ffnDim), "
            + "vocabulary \(c.vocabulary)"
        return c
    }

    /// The Wan VAE: its layout, base width, and the decoder's share of the parameters (what a video loads).
    static func readVAE(_ r: inout PartReport, backend: any Backend) throws -> MemoryEstimate.Decoder {
        let file = try WeightFiles.open(r.part.path)
        let source = WeightFileTensors(file)
        r.describe(file, source: source)
        let layout = try WanVAEKeyLayout.detect(source.keys)
        let base = WanVAEConfig.family(keys: source.keys)
        let binder = try WeightBinder(source: source, rules: layout.rules(config: base), backend: backend, dtype: .f32)
        let config = try WanVAEConfig.detect(from: binder, base: base)
        let decoderKeys = layout == .wan ? ["decoder.", "conv2."] : ["decoder.", "post_quant_conv."]
        let decoder = parameters(of: source) { k in decoderKeys.contains { k.hasPrefix($0) } }
        r.layout = layout == .wan ? "Wan key names" : "diffusers key names"
        let widths = config.isResidual ? "widths \(config.baseDim) / \(config.decoderBaseDim), z \(config.zDim), stride 4x16x16"
            : "base width \(config.baseDim)"
        r.architecture = "\(config.name): \(widths), decoder \(MemoryEstimate.grouped(decoder)) parameters, "
            + "encoder \(MemoryEstimate.grouped(r.parameters - decoder))"
        return .wanVAE(config, parameters: decoder)
    }

    /// TAEHV: the decoder's stage widths and whether the file has an encoder.
    static func readTinyDecoder(_ r: inout PartReport) throws -> MemoryEstimate.Decoder {
        let file = try WeightFiles.open(r.part.path)
        let source = WeightFileTensors(file)
        r.describe(file, source: source)
        let channels = ["decoder.1.weight", "decoder.8.weight", "decoder.14.weight", "decoder.20.weight"]
            .compactMap { source.shape(of: $0)?[0] }
        guard channels.count == 4 else {
            throw ReelError.weights(message: "not a TAEHV checkpoint (no decoder.1/8/14/20 weights)")
        }
        r.layout = "taew2_1 key names"
        r.architecture = "TAEHV: decoder channels \(channels)"
            + (source.keys.contains { $0.hasPrefix("encoder.") } ? ", with encoder" : ", no encoder")
        return .tiny(channels: channels, parameters: parameters(of: source) { $0.hasPrefix("decoder.") })
    }

    static func parameters(of source: any TensorSource, where include: (String) -> Bool) -> Int {
        source.keys.filter(include).reduce(0) { $0 + (source.shape(of: $1)?.count ?? 0) }
    }

    /// The generator sub-dictionary `WanDiT.openCheckpoint` picks, if the checkpoint has one.
    static func scope(of file: any WeightFile, ema: Bool) -> String? {
        let tops = Set(file.topLevelNames)
        guard !tops.contains("blocks") else { return nil }
        let order = ema ? ["generator_ema", "generator", "model"] : ["generator", "generator_ema", "model"]
        return order.first { tops.contains($0) }
    }

    /// Where config.json and the weights disagree.
    static func disagreements(_ file: DiTConfigFile?, _ c: WanDiTConfig) -> [String] {
        guard let file else { return [] }
        let checks: [(String, Int?, Int)] = [
            ("dim", file.dim, c.dim), ("layers", file.layers, c.layers), ("ffn_dim", file.ffnDim, c.ffnDim),
            ("in channels", file.inChannels, c.inChannels), ("text_dim", file.textDim, c.textDim),
        ]
        return checks.compactMap { name, said, found in
            guard let said, said != found else { return nil }
            return "config.json says \(name) \(said), the DiT's weights have \(found)"
        }
    }
}

extension ModelInspection.PartReport {
    /// Format, parameter count and stored dtypes of `source`'s tensors in `file`.
    mutating func describe(_ file: any WeightFile, source: any TensorSource) {
        format = file.format
        for key in source.keys {
            let n = source.shape(of: key)?.count ?? 0
            parameters += n
            if let type = storedType(file, key) { storedTypes[type, default: 0] += n }
        }
    }

    /// The stored dtype of `key`, looked up under the sub-dictionaries a checkpoint may nest it in.
    private func storedType(_ file: any WeightFile, _ key: String) -> String? {
        for prefix in ["", "generator.", "generator_ema.", "model.", "generator_lora."] {
            if let info = try? file.info(prefix + key) { return info.storedType }
        }
        return nil
    }
}
