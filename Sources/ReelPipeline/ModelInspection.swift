import Foundation
import ReelCore
import ReelIO
import ReelModels

/// What a model folder holds, read from the weight files' headers without loading a tensor: each
/// part's format, key layout, parameters per stored dtype and architecture, what is missing, what is
/// unreadable, and the device memory the model takes at a video size. `reel inspect DIR` prints it.
public struct ModelInspection: Sendable {
    /// One part of the model as read from its files.
    public struct PartReport: Sendable {
        public var part: ModelFolder.Part
        /// "safetensors", "PyTorch checkpoint", "sharded index (2 shards)", ...
        public var format = ""
        /// Key layout or sub-dictionary ("wan", "diffusers", "LongLive generator", ...).
        public var layout = ""
        public var parameters = 0
        /// Parameters per dtype as stored ("bf16" -> 1,234).
        public var storedTypes: [String: Int] = [:]
        /// The architecture in words ("dim 1536, 30 layers, 12 heads x 128, ffn 8960").
        public var architecture = ""
        /// Why the part could not be read, if it could not.
        public var problem: String?
    }

    public var folder: ModelFolder
    public var parts: [PartReport]
    public var dit: WanDiTConfig?
    public var textEncoder: UMT5Config?
    public var decoder: MemoryEstimate.Decoder?
    /// Disagreements between config.json and the weights, and unreadable parts.
    public var problems: [String]

    /// Reads every part's headers. `backend` only indexes keys (no tensor is read).
    public init(folder: ModelFolder, backend: any Backend) {
        self.folder = folder
        parts = []
        problems = []
        var vae: MemoryEstimate.Decoder?, tiny: MemoryEstimate.Decoder?
        for part in folder.parts {
            var r = PartReport(part: part)
            do {
                switch part.role {
                case .tokenizer:
                    r.format = part.path.hasSuffix(".json") ? "Hugging Face tokenizer.json" : "SentencePiece model"
                case .dit:
                    let file = try WeightFiles.open(part.path)
                    let (source, _) = try WanDiT.openCheckpoint(path: part.path, ema: folder.files.ema)
                    r.describe(file, source: source)
                    let scope = Self.scope(of: file, ema: folder.files.ema)
                    let layout = WanDiT.Layout.detect(source.keys)
                    let names = switch layout {
                    case .wan: "Wan key names"
                    case .longLive: "Wan key names under \"model.\" (the training wrapper's)"
                    case .diffusers: "diffusers key names"
                    }
                    r.layout = (scope.map { "\"\($0)\" of the checkpoint, " } ?? "") + names
                    let binder = try WeightBinder(source: source, rules: layout.rules, backend: backend, dtype: .f32)
                    var config = try WanDiT.detectConfig(binder)
                    if let heads = folder.heads { config.heads = heads }
                    if let n = file.metadata["text_len"].flatMap(Int.init) { config.textLength = n }
                    dit = config
                    r.architecture = "dim \(config.dim), \(config.layers) layers, \(config.heads) heads x \(config.dim / max(config.heads, 1)), "
                        + "ffn \(config.ffnDim), text dim \(config.textDim)"
                    problems += Self.disagreements(folder.ditConfig, config)
                case .lora:
                    let file = try WeightFiles.open(part.path)
                    let (_, lora) = try WanDiT.openCheckpoint(path: folder.part(.dit)?.path ?? part.path, lora: part.path)
                    guard let source = lora else { throw ReelError.weights(message: "no LoRA tensors") }
                    r.describe(file, source: source)
                    let downs = source.keys.filter { $0.hasSuffix("lora_A.weight") }
                    let rank = downs.first.flatMap { source.shape(of: $0)?[0] } ?? 0
                    r.layout = file.topLevelNames == ["generator_lora"] ? "\"generator_lora\" of the checkpoint, PEFT key names" : "PEFT key names"
                    r.architecture = "rank \(rank) on \(downs.count) linear layers (merged into the DiT at load)"
                case .textEncoder:
                    let file = try WeightFiles.open(part.path)
                    let source = WeightFileTensors(file)
                    r.describe(file, source: source)
                    let config = try UMT5Encoder.detectConfig(from: source, backend: backend)
                    textEncoder = config
                    r.layout = source.keys.contains { $0.hasPrefix("encoder.block.") } ? "transformers key names" : "Wan t5.py key names"
                    r.architecture = "umT5: dim \(config.dim), \(config.layers) layers, \(config.heads) heads x \(config.headDim), "
                        + "ffn \(config.ffnDim), vocabulary \(config.vocabulary)"
                case .vae:
                    let file = try WeightFiles.open(part.path)
                    let source = WeightFileTensors(file)
                    r.describe(file, source: source)
                    let layout = try WanVAEKeyLayout.detect(source.keys)
                    let binder = try WeightBinder(source: source, rules: layout.rules(config: .wan21), backend: backend, dtype: .f32)
                    let config = try WanVAEConfig.detect(from: binder)
                    let decoderKeys = layout == .wan ? ["decoder.", "conv2."] : ["decoder.", "post_quant_conv."]
                    let decoderParameters = source.keys.filter { k in decoderKeys.contains { k.hasPrefix($0) } }
                        .reduce(0) { $0 + (source.shape(of: $1)?.count ?? 0) }
                    r.layout = layout == .wan ? "Wan key names" : "diffusers key names"
                    r.architecture = "Wan2.1 VAE: base width \(config.baseDim), decoder \(MemoryEstimate.grouped(decoderParameters)) parameters, "
                        + "encoder \(MemoryEstimate.grouped(r.parameters - decoderParameters))"
                    vae = .wanVAE(config, parameters: decoderParameters)
                case .tinyDecoder:
                    let file = try WeightFiles.open(part.path)
                    let source = WeightFileTensors(file)
                    r.describe(file, source: source)
                    let channels = ["decoder.1.weight", "decoder.8.weight", "decoder.14.weight", "decoder.20.weight"]
                        .compactMap { source.shape(of: $0)?[0] }
                    guard channels.count == 4 else { throw ReelError.weights(message: "not a TAEHV checkpoint (no decoder.1/8/14/20 weights)") }
                    let decoderParameters = source.keys.filter { $0.hasPrefix("decoder.") }.reduce(0) { $0 + (source.shape(of: $1)?.count ?? 0) }
                    r.layout = "taew2_1 key names"
                    r.architecture = "TAEHV: decoder channels \(channels)"
                        + (source.keys.contains { $0.hasPrefix("encoder.") } ? ", with encoder" : ", no encoder")
                    tiny = .tiny(channels: channels, parameters: decoderParameters)
                }
            } catch {
                let message = (error as? ReelError)?.description ?? "\(error)"
                r.problem = message
                problems.append("\(part.role.rawValue) \(folder.shortName(part)): \(message)")
            }
            parts.append(r)
        }
        // LoadedModel's choice: the tiny decoder where there is one.
        decoder = tiny ?? vae
    }

    /// The generator sub-dictionary `WanDiT.openCheckpoint` picks, if the checkpoint has one.
    static func scope(of file: any WeightFile, ema: Bool) -> String? {
        let tops = Set(file.topLevelNames)
        guard !tops.contains("blocks") else { return nil }
        return (ema ? ["generator_ema", "generator", "model"] : ["generator", "generator_ema", "model"]).first { tops.contains($0) }
    }

    /// Where config.json and the weights disagree.
    static func disagreements(_ file: DiTConfigFile?, _ c: WanDiTConfig) -> [String] {
        guard let file else { return [] }
        let checks: [(String, Int?, Int)] = [("dim", file.dim, c.dim), ("layers", file.layers, c.layers),
                                             ("ffn_dim", file.ffnDim, c.ffnDim), ("in channels", file.inChannels, c.inChannels),
                                             ("text_dim", file.textDim, c.textDim)]
        return checks.compactMap { name, said, found in
            guard let said, said != found else { return nil }
            return "config.json says \(name) \(said), the DiT's weights have \(found)"
        }
    }

    /// The device memory of streaming at `geometry` (nil without a readable DiT).
    public func estimate(geometry: BlockGeometry, schedule: StreamingSchedule = .longLive, dtype: DType = .bf16) -> MemoryEstimate? {
        guard let dit, let ditReport = parts.first(where: { $0.part.role == .dit && $0.problem == nil }) else { return nil }
        return MemoryEstimate.streaming(dit: dit, ditParameters: ditReport.parameters,
                                        textEncoderParameters: textEncoder?.parameterCount, decoder: decoder,
                                        geometry: geometry, schedule: schedule, dtype: dtype)
    }

    /// Whether every part a video needs is there and readable.
    public var isComplete: Bool { folder.missing.isEmpty && problems.isEmpty }

    /// The report `reel inspect DIR` prints.
    public func report(geometry: BlockGeometry, schedule: StreamingSchedule = .longLive, dtype: DType = .bf16) -> String {
        var lines = ["\(folder.path): \(folder.kind.rawValue)"]
        if let base = folder.base { lines.append("base: \(base) (supplies the parts the folder lacks)") }
        if folder.files.ema { lines.append("generator: the EMA weights (generator_ema), as the checkpoint's authors run it") }
        lines.append("found:")
        let width = parts.map { $0.part.role.rawValue.count }.max() ?? 0
        for r in parts {
            let role = r.part.role.rawValue.padding(toLength: width, withPad: " ", startingAt: 0)
            lines.append("  \(role)  \(folder.shortName(r.part))")
            let pad = String(repeating: " ", count: width + 4)
            if let problem = r.problem {
                lines.append(pad + "UNREADABLE: \(problem)")
                continue
            }
            var what = [r.format, r.layout].filter { !$0.isEmpty }
            if r.parameters > 0 {
                let types = r.storedTypes.sorted { $0.value > $1.value }.map { $0.key }.joined(separator: "+")
                what.append("\(MemoryEstimate.grouped(r.parameters)) parameters, \(types)")
            }
            lines.append(pad + what.joined(separator: ", "))
            if !r.architecture.isEmpty { lines.append(pad + r.architecture) }
        }
        if let config = folder.ditConfig, let heads = config.heads {
            lines.append("  heads from config.json: \(heads)")
        }
        let missing = folder.missing
        lines.append("missing: " + (missing.isEmpty ? "nothing"
            : missing.map { "\($0.rawValue) (\(ModelFolder.expected($0)))" }.joined(separator: "; ")))
        if folder.kind.needsBase && folder.base == nil {
            lines.append("  a \(folder.kind.rawValue) holds only the DiT: give its Wan2.1 base folder with --base DIR")
        }
        for p in problems { lines.append("problem: \(p)") }
        if let e = estimate(geometry: geometry, schedule: schedule, dtype: dtype) {
            lines.append("device memory at \(geometry.width)x\(geometry.height), \(dtype), attention window \(schedule.attentionFrames) latent frames:")
            let w = e.items.map(\.name.count).max() ?? 0
            for item in e.items {
                lines.append("  " + item.name.padding(toLength: w, withPad: " ", startingAt: 0)
                    + "  " + Self.bytes(item.bytes).leftPadded(to: 9) + "  " + item.detail)
            }
            lines.append("  total \(Self.bytes(e.total)); without the text encoder \(Self.bytes(e.withoutTextEncoder))")
        }
        return lines.joined(separator: "\n")
    }
}

extension ModelInspection {
    /// "9.57 GB", "12.3 MB".
    static func bytes(_ n: Double) -> String {
        n >= 1e9 ? String(format: "%.2f GB", n / 1e9) : String(format: "%.1f MB", n / 1e6)
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
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
