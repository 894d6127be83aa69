// The folders people download, recognised by their files (docs/model-folders.md lists them with sources):
//
//   Reel          dit.safetensors [lora.safetensors] text_encoder.safetensors tokenizer.json|spiece.model
//                 vae.safetensors|taehv.safetensors [reel.json]
//   Wan2.1        config.json diffusion_pytorch_model.safetensors | diffusion_pytorch_model.safetensors.index.json
//                 + diffusion_pytorch_model-0000N-of-0000M.safetensors, models_t5_umt5-xxl-enc-bf16.pth,
//                 google/umt5-xxl/{tokenizer.json,spiece.model}, Wan2.1_VAE.pth
//                 (Wan2.1 wan/configs/wan_t2v_1_3B.py: t5_checkpoint, t5_tokenizer, vae_checkpoint;
//                 wan/text2video.py: WanModel.from_pretrained(checkpoint_dir))
//   diffusers     model_index.json transformer/ text_encoder/ tokenizer/ vae/ (each a folder of config.json and
//                 safetensors, sharded with an index where large; diffusers scripts/convert_wan_to_diffusers.py
//                 pipe.save_pretrained)
//   LongLive      models/longlive_base.pt (the DiT under "generator"), models/lora.pt (PEFT state dict under
//                 "generator_lora") on a Wan2.1 base folder (LongLive v1.0 configs/longlive_inference.yaml:
//                 generator_ckpt, lora_ckpt, use_ema false; inference.py)
//   Self-Forcing  checkpoints/self_forcing_dmd.pt ("generator", "generator_ema"; the README's command passes
//                 --use_ema) on a Wan2.1 base folder (Self-Forcing inference.py, README "Download checkpoints")
//   LongLive 2.0  model_bf16.pt (the merged bf16 generator: the wrapper's state dict, `model.` names, under "generator",
//                 with string and bool metadata beside it; scripts/merge_lora_generator.py, README "BF16",
//                 configs/fp8/inference_fp8.yaml `generator_ckpt: /path/to/LongLive-2.0-5B/model_bf16.pt`), or an
//                 unmerged generator_checkpoint.pt + lora_checkpoint.pt (configs/inference.yaml `generator_ckpt`,
//                 `lora_ckpt`; the LoRA under "generator_lora"), on a Wan2.2-TI2V-5B base folder (utils/wan_5b_wrapper.py
//                 `CausalWanModel.from_pretrained("wan_models/Wan2.2-TI2V-5B/")`; LongLive main)
//   CausVid       model.pt in a checkpoint folder ("generator"; CausVid minimal_inference/autoregressive_inference.py)
//                 on a Wan2.1 base folder
//   TAEHV         taew2_1.pth or taew2_1.safetensors (madebyollin/taehv) beside any of them (Self-Forcing demo.py
//                 keeps it in checkpoints/); taew2_2.pth or taew2_2.safetensors (Wan2.2's 48-channel latents) beside a
//                 LongLive 2.0 or Wan2.2-TI2V-5B folder
import Foundation
import ReelCore
import ReelIO
import ReelModels

/// A model folder recognised by its files: which kind it is, where each part of the model is,
/// what is missing, and the folder the parts it lacks came from (a Wan2.1 base under a
/// LongLive, Self-Forcing or CausVid checkpoint).
public struct ModelFolder: Sendable, Equatable {
    /// The layouts Reel recognises.
    public enum Kind: String, Sendable, CaseIterable {
        case reel = "Reel model folder"
        case wan = "Wan2.1 (Wan-AI layout)"
        case diffusers = "Wan2.1 diffusers pipeline"
        case longLive = "LongLive checkpoint"
        case longLive2 = "LongLive 2.0 checkpoint"
        case selfForcing = "Self-Forcing checkpoint"
        case causVid = "CausVid checkpoint"
        /// A folder with parts but no DiT (a text encoder and VAE only, say).
        case parts = "model parts"

        /// Checkpoints that hold only the DiT and take the rest from a base folder (Wan2.1; LongLive 2.0: Wan2.2-TI2V-5B).
        public var needsBase: Bool { [.longLive, .longLive2, .selfForcing, .causVid].contains(self) }

        /// The base folder such a checkpoint takes, for messages.
        public var baseName: String { self == .longLive2 ? "Wan2.2-TI2V-5B" : "Wan2.1" }
    }

    /// One part of a model.
    public enum Role: String, Sendable, CaseIterable {
        case dit = "DiT", lora = "LoRA", textEncoder = "text encoder", tokenizer = "tokenizer"
        case vae = "VAE", tinyDecoder = "tiny decoder"
    }

    /// A part found: its role and path (a file, or a diffusers component folder).
    public struct Part: Sendable, Equatable {
        public var role: Role
        public var path: String
        /// The folder it was found in (the model folder or its base).
        public var folder: String
    }

    public var path: String
    public var kind: Kind
    public var parts: [Part]
    /// The Wan2.1 folder that supplied parts this one lacks, if any.
    public var base: String?
    /// Attention heads from `reel.json`, or the DiT's `config.json` (Wan `num_heads`, diffusers
    /// `num_attention_heads`).
    public var heads: Int?
    /// The DiT's `config.json`, when there is one.
    public var ditConfig: DiTConfigFile?
    /// `reel.json`'s video size and frame rate.
    public var size: String?
    public var fps: Int?
    /// `reel.json`'s video-to-video noise scale.
    public var noiseScale: Double?
    /// Whether the checkpoint's EMA generator is the one its authors run (Self-Forcing).
    public var prefersEMA: Bool

    public func part(_ role: Role) -> Part? { parts.first { $0.role == role } }

    /// The parts a video needs that were not found (the LoRA is optional; one decoder suffices).
    public var missing: [Role] {
        var out = [Role.dit, .textEncoder, .tokenizer].filter { part($0) == nil }
        if part(.vae) == nil && part(.tinyDecoder) == nil { out.append(.vae) }
        return out
    }

    /// The paths as `ModelFiles`.
    public var files: ModelFiles {
        var f = ModelFiles(dit: part(.dit)?.path, lora: part(.lora)?.path, textEncoder: part(.textEncoder)?.path,
                           tokenizer: part(.tokenizer)?.path, vae: part(.vae)?.path,
                           tinyDecoder: part(.tinyDecoder)?.path, heads: heads, size: size, fps: fps)
        f.ema = prefersEMA
        f.noiseScale = noiseScale
        f.origin = self
        return f
    }
}

extension ModelFolder {
    /// Where each part may be, relative to a folder, in the order tried; each place names the kind
    /// of folder it marks when it holds the DiT.
    static let places: [(role: Role, path: String, kind: Kind)] = [
        (.dit, "dit.safetensors", .reel),
        (.dit, "diffusion_pytorch_model.safetensors.index.json", .wan),
        (.dit, "diffusion_pytorch_model.safetensors", .wan),
        (.dit, "transformer", .diffusers),
        (.dit, "models/longlive_base.pt", .longLive),
        (.dit, "longlive_base.pt", .longLive),
        (.dit, "checkpoints/self_forcing_dmd.pt", .selfForcing),
        (.dit, "self_forcing_dmd.pt", .selfForcing),
        (.dit, "model_bf16.pt", .longLive2),
        (.dit, "generator_checkpoint.pt", .longLive2),
        (.dit, "model.pt", .causVid),
        (.dit, "autoregressive_checkpoint/model.pt", .causVid),
        (.lora, "lora.safetensors", .reel),
        (.lora, "models/lora.pt", .longLive),
        (.lora, "lora.pt", .longLive),
        (.lora, "lora_checkpoint.pt", .longLive2),
        (.textEncoder, "text_encoder.safetensors", .reel),
        (.textEncoder, "models_t5_umt5-xxl-enc-bf16.pth", .wan),
        (.textEncoder, "text_encoder", .diffusers),
        (.tokenizer, "tokenizer.json", .reel),
        (.tokenizer, "spiece.model", .reel),
        (.tokenizer, "google/umt5-xxl/tokenizer.json", .wan),
        (.tokenizer, "google/umt5-xxl/spiece.model", .wan),
        (.tokenizer, "tokenizer/tokenizer.json", .diffusers),
        (.tokenizer, "tokenizer/spiece.model", .diffusers),
        (.vae, "vae.safetensors", .reel),
        (.vae, "Wan2.1_VAE.pth", .wan),
        (.vae, "Wan2.2_VAE.pth", .wan),
        (.vae, "vae", .diffusers),
        (.tinyDecoder, "taehv.safetensors", .reel),
        (.tinyDecoder, "taew2_1.pth", .wan),
        (.tinyDecoder, "taew2_1.safetensors", .wan),
        (.tinyDecoder, "checkpoints/taew2_1.pth", .selfForcing),
        (.tinyDecoder, "taew2_2.pth", .wan),
        (.tinyDecoder, "taew2_2.safetensors", .wan),
    ]

    /// Where a Wan2.1 base folder is looked for when none is given, relative to the model folder:
    /// LongLive's and Self-Forcing's instructions download it to `wan_models/Wan2.1-T2V-1.3B` beside
    /// `longlive_models/` or inside the repository that holds `checkpoints/`.
    static let basePlaces = ["wan_models/Wan2.1-T2V-1.3B", "Wan2.1-T2V-1.3B", "../wan_models/Wan2.1-T2V-1.3B",
                             "../Wan2.1-T2V-1.3B", "../../wan_models/Wan2.1-T2V-1.3B",
                             "wan_models/Wan2.1-T2V-14B", "../wan_models/Wan2.1-T2V-14B"]
    /// LongLive 2.0's: its wrapper loads `wan_models/Wan2.2-TI2V-5B/` (utils/wan_5b_wrapper.py).
    static let base2Places = ["wan_models/Wan2.2-TI2V-5B", "Wan2.2-TI2V-5B", "../wan_models/Wan2.2-TI2V-5B",
                              "../Wan2.2-TI2V-5B", "../../wan_models/Wan2.2-TI2V-5B"]

    static func basePlaces(for kind: Kind) -> [String] { kind == .longLive2 ? base2Places : basePlaces }

    /// What the files of a role may be called, for messages.
    static func expected(_ role: Role) -> String {
        switch role {
        case .dit: "dit.safetensors, diffusion_pytorch_model*.safetensors, transformer/, models/longlive_base.pt, "
            + "model_bf16.pt, checkpoints/self_forcing_dmd.pt or model.pt"
        case .lora: "lora.safetensors, models/lora.pt or lora_checkpoint.pt"
        case .textEncoder: "models_t5_umt5-xxl-enc-bf16.pth, text_encoder/ or text_encoder.safetensors"
        case .tokenizer: "google/umt5-xxl/tokenizer.json, tokenizer/ or tokenizer.json / spiece.model"
        case .vae: "Wan2.1_VAE.pth, Wan2.2_VAE.pth, vae/ or vae.safetensors (or taew2_1.pth for the tiny decoder)"
        case .tinyDecoder: "taew2_1.pth, taew2_1.safetensors or taehv.safetensors (taew2_2.pth or .safetensors for Wan2.2's latents)"
        }
    }

    /// Recognises the folder at `path`. `base`: a Wan2.1 folder for the parts the folder lacks (found
    /// by itself where LongLive's and Self-Forcing's instructions put it when not given).
    public static func recognise(_ path: String, base: String? = nil) throws -> ModelFolder {
        guard isDirectory(path) else {
            throw ReelError.input(FileManager.default.fileExists(atPath: path)
                ? "--model \(path) is a file; give the folder that holds it (or name the file with --dit)"
                : "model folder \(path) does not exist")
        }
        if let base, !isDirectory(base) { throw ReelError.input("--base \(base) is not a folder") }
        var (parts, kind) = find(in: path)
        if !parts.contains(where: { $0.role == .dit }), let checkpoint = try generatorCheckpoint(in: path) {
            parts.insert(Part(role: .dit, path: checkpoint, folder: path), at: 0)
            kind = .selfForcing
        }
        var folder = ModelFolder(path: path, kind: kind ?? .parts, parts: parts, base: nil, heads: nil, ditConfig: nil,
                                 size: nil, fps: nil, prefersEMA: kind == .selfForcing)
        try folder.readConfigs()
        let nearby = folder.kind.needsBase
            ? basePlaces(for: folder.kind).map { (path as NSString).appendingPathComponent($0) }.first(where: isDirectory)
                .map { URL(fileURLWithPath: $0).standardized.path } : nil
        if let baseFolder = base ?? nearby, baseFolder != path {
            let (baseParts, _) = find(in: baseFolder)
            let added = baseParts.filter { folder.part($0.role) == nil }
            if !added.isEmpty {
                folder.base = baseFolder
                folder.parts += added
                if folder.heads == nil || folder.ditConfig == nil {
                    var b = ModelFolder(path: baseFolder, kind: .wan, parts: baseParts, base: nil, heads: nil, ditConfig: nil,
                                        size: nil, fps: nil, prefersEMA: false)
                    try b.readConfigs()
                    folder.heads = folder.heads ?? b.heads
                    folder.ditConfig = folder.ditConfig ?? b.ditConfig
                }
                if folder.kind == .longLive2 { try folder.checkLongLive2Base() }
            } else if base != nil {
                folder.base = baseFolder
            }
        }
        let order = Dictionary(uniqueKeysWithValues: Role.allCases.enumerated().map { ($1, $0) })
        folder.parts.sort { order[$0.role, default: 0] < order[$1.role, default: 0] }
        return folder
    }

    /// Folders one level down that hold a DiT: where to point `--model` when `path` holds nothing.
    public var modelFoldersInside: [String] {
        guard parts.isEmpty else { return [] }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
        return names.filter { name in
            let sub = (path as NSString).appendingPathComponent(name)
            return Self.isDirectory(sub) && Self.find(in: sub).0.contains { $0.role == .dit }
        }
    }

    /// The parts at the known places of `folder`, and the kind its DiT marks (`.parts` without a DiT,
    /// nil when nothing is there).
    static func find(in folder: String) -> ([Part], Kind?) {
        var parts: [Part] = []
        var kind: Kind?
        for place in places where !parts.contains(where: { $0.role == place.role }) {
            let full = (folder as NSString).appendingPathComponent(place.path)
            guard FileManager.default.fileExists(atPath: full) else { continue }
            parts.append(Part(role: place.role, path: full, folder: folder))
            if place.role == .dit { kind = place.kind }
        }
        return (parts, kind ?? (parts.isEmpty ? nil : .parts))
    }

    /// A `*.pt` at the top of `folder` or in its `checkpoints/` whose top level holds a generator
    /// (Self-Forcing's other checkpoints: self_forcing_sid.pt, ...).
    static func generatorCheckpoint(in folder: String) throws -> String? {
        for sub in ["", "checkpoints"] {
            let dir = (folder as NSString).appendingPathComponent(sub)
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
            for name in names where name.hasSuffix(".pt") && name != "lora.pt" {
                let file = (dir as NSString).appendingPathComponent(name)
                guard let tops = try? WeightFiles.open(file).topLevelNames else { continue }
                if tops.contains("generator") || tops.contains("generator_ema") { return file }
            }
        }
        return nil
    }

    /// Reads `reel.json` and the DiT's `config.json` (Wan: beside the weights; diffusers: `transformer/`).
    mutating func readConfigs() throws {
        let reelJSON = (path as NSString).appendingPathComponent("reel.json")
        if FileManager.default.fileExists(atPath: reelJSON) {
            let settings = try ReelSettings.read(reelJSON)
            heads = settings.heads
            size = settings.size
            fps = settings.fps
            noiseScale = settings.noiseScale
        }
        for sub in ["config.json", "transformer/config.json"] {
            let file = (path as NSString).appendingPathComponent(sub)
            guard FileManager.default.fileExists(atPath: file) else { continue }
            let config = try DiTConfigFile.read(file)
            guard config.describesDiT else { continue }
            ditConfig = config
            heads = heads ?? config.heads
            break
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    /// `path` relative to the model folder (or its base), for reports.
    public func shortName(_ part: Part) -> String {
        let prefix = part.folder.hasSuffix("/") ? part.folder : part.folder + "/"
        let name = part.path.hasPrefix(prefix) ? String(part.path.dropFirst(prefix.count)) : part.path
        let isFolder = Self.isDirectory(part.path)
        return (part.folder == path ? "" : "(base) ") + name + (isFolder ? "/" : "")
    }

    /// What was found and what is missing, for error messages: "found DiT models/longlive_base.pt,
    /// LoRA models/lora.pt; missing text encoder (...)".
    public var summary: String {
        let found = parts.map { "\($0.role.rawValue) \(shortName($0))" }.joined(separator: ", ")
        let inside = modelFoldersInside.isEmpty ? "" : " (model folders inside: \(modelFoldersInside.joined(separator: ", ")))"
        return "\(path) (\(kind.rawValue)): found \(found.isEmpty ? "nothing Reel reads" + inside : found)"
    }

    /// The error for a part that a command needs and the folder lacks.
    public func missingError(_ role: Role, option: String) -> ReelError {
        var hint = "give \(option)"
        if kind.needsBase && base == nil && role != .dit && role != .lora {
            hint = "a \(kind.rawValue) holds only the DiT: give the \(kind.baseName) base folder with --base DIR "
                + "(looked for \(Self.basePlaces(for: kind).prefix(4).joined(separator: ", ")) beside it), or \(option)"
        }
        return .input("no \(role.rawValue) in \(summary); expected \(Self.expected(role)): \(hint)")
    }
}

extension ModelFolder {
    /// A LongLive 2.0 checkpoint's base must be Wan2.2-TI2V-5B's: its config.json (the heads the checkpoint is
    /// loaded with) must describe the checkpoint's DiT, a model of the Wan2.2 VAE's 48 latent channels. Reads the
    /// checkpoint's header only (`patch_embedding.weight` `[dim, 48, 1, 2, 2]`).
    func checkLongLive2Base() throws {
        guard let ditPart = part(.dit), let base else { return }
        let (source, _) = try WanDiT.openCheckpoint(path: ditPart.path, ema: prefersEMA)
        let key = source.keys.first { $0 == "patch_embedding.weight" || $0.hasSuffix(".patch_embedding.weight") }
        guard let key, let shape = source.shape(of: key), shape.rank == 5 else {
            throw ReelError.badFile(path: ditPart.path, message: "no patch_embedding.weight [dim, 48, 1, 2, 2]: "
                                    + "not a LongLive 2.0 generator checkpoint")
        }
        let (dim, channels) = (shape[0], shape[1])
        guard channels == 48 else {
            throw ReelError.badFile(path: ditPart.path, message: "\(key) is \(shape): a DiT of \(channels) latent channels, "
                                    + "not LongLive 2.0's 48 (the Wan2.2 VAE's); a LongLive 1.0 checkpoint is "
                                    + "models/longlive_base.pt on a Wan2.1 base")
        }
        if let config = ditConfig {
            let wrong = [("in_dim", config.inChannels, channels), ("dim", config.dim, dim)]
                .filter { $0.1 != nil && $0.1 != $0.2 }
            if !wrong.isEmpty {
                let what = wrong.map { "\($0.0) \($0.1!) (the checkpoint's \($0.2))" }.joined(separator: ", ")
                throw ReelError.input("--base \(base) does not fit \(shortName(ditPart)): its config.json has \(what); "
                                      + "a LongLive 2.0 checkpoint takes the Wan2.2-TI2V-5B folder as its base")
            }
        }
    }
}
