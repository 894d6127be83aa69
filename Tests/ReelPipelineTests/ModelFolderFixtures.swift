import Foundation
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
import ReelTestSupport

/// Builds the folders people download, with random weights of a tiny architecture, in the files'
/// real formats and key layouts (docs/model-folders.md gives each layout's source):
/// `torch.save` zip checkpoints (`TorchSave`), safetensors (single and sharded with an index),
/// Wan2.1's key names, diffusers' and transformers', LongLive's `generator` / `generator_lora`
/// nesting, Self-Forcing's `generator` + `generator_ema`, CausVid's `generator`.
struct ModelFolderFixtures {
    let backend = CPUBackend()
    let root: URL

    /// The tiny architecture: a DiT of dim 64 with 2 heads (config.json says so: dim / 128 would not),
    /// a umT5 of width 32 over the shipped tokenizer's 342 ids, a Wan VAE of base width 8 and a TAEHV.
    static let dit = WanDiTConfig(dim: 64, ffnDim: 128, heads: 2, layers: 2, textDim: 32)
    static let umt5 = UMT5Config(vocabulary: 384, dim: 32, heads: 2, headDim: 16, ffnDim: 64, layers: 2)
    static let vae = WanVAEConfig(baseDim: 8)
    static let taehvChannels = [16, 8, 8, 8]
    /// The shipped tiny model's tokenizer (umT5 conventions), standing in for google/umt5-xxl's.
    static let tokenizerFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Models/tiny")

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("reel-model-folders-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(at: root) }

    func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    // MARK: - Weights (Wan key names, float32 on the CPU)

    func ditWeights(seed: UInt64 = 1) throws -> [(String, Tensor)] {
        try Self.sorted(WanDiT.randomWeights(Self.dit, on: backend, seed: seed))
    }

    func textEncoderWeights() throws -> [(String, Tensor)] {
        try Self.sorted(UMT5Encoder.randomWeights(Self.umt5, on: backend, seed: 2))
    }

    /// Encoder and decoder with the quant convs, as `Wan2.1_VAE.pth` holds them.
    func vaeWeights() throws -> [(String, Tensor)] {
        let decoder = try WanVAEDecoder.randomWeights(Self.vae, on: backend, seed: 3).tensors
        let encoder = try WanVAEEncoder.randomWeights(Self.vae, on: backend, seed: 3).tensors
        return decoder.merging(encoder) { a, _ in a }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    func taehvWeights() throws -> [(String, Tensor)] {
        let decoder = try TinyDecoder.randomWeights(channels: Self.taehvChannels, on: backend, seed: 4).tensors
        let encoder = try TinyEncoder.randomWeights(channels: 8, on: backend, seed: 5).tensors
        return decoder.merging(encoder) { a, _ in a }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// A PEFT LoRA of rank 4 on every Linear inside the blocks (LongLive's utils/lora_utils.py targets
    /// the Linear layers of each attention block), under PEFT's `base_model.model.` names.
    func loraWeights(_ c: WanDiTConfig = Self.dit) throws -> [(String, Tensor)] {
        let r = 4
        var out: [(String, Tensor)] = []
        for i in 0..<c.layers {
            var modules: [(String, Int, Int)] = []
            for a in ["self_attn", "cross_attn"] { for m in ["q", "k", "v", "o"] { modules.append(("\(a).\(m)", c.dim, c.dim)) } }
            modules += [("ffn.0", c.dim, c.ffnDim), ("ffn.2", c.ffnDim, c.dim)]
            for (index, (name, fanIn, fanOut)) in modules.enumerated() {
                let p = "base_model.model.blocks.\(i).\(name)"
                let seed = UInt64(100 + i * 16 + index)
                out.append(("\(p).lora_A.weight", try backend.randomNormal([r, fanIn], seed: seed, offset: 0, dtype: .f32)))
                out.append(("\(p).lora_B.weight", try backend.affine(try backend.randomNormal([fanOut, r], seed: seed + 1000, offset: 0,
                                                                                            dtype: .f32), scale: 0.05, bias: 0)))
            }
        }
        return out
    }

    static func sorted(_ t: InMemoryTensors) -> [(String, Tensor)] { t.tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }

    // MARK: - Key layouts

    /// Wan -> diffusers DiT names: diffusers scripts/convert_wan_to_diffusers.py TRANSFORMER_KEYS_RENAME_DICT,
    /// applied in its order (each a plain substring replacement).
    static let diffusersDiTRenames: [(String, String)] = [
        ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
        ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
        ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
        ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
        ("time_projection.1", "condition_embedder.time_proj"),
        ("head.modulation", "scale_shift_table"), ("head.head", "proj_out"), ("modulation", "scale_shift_table"),
        ("ffn.0", "ffn.net.0.proj"), ("ffn.2", "ffn.net.2"),
        ("norm2", "norm__placeholder"), ("norm3", "norm2"), ("norm__placeholder", "norm3"),
        ("self_attn.q", "attn1.to_q"), ("self_attn.k", "attn1.to_k"), ("self_attn.v", "attn1.to_v"),
        ("self_attn.o", "attn1.to_out.0"), ("self_attn.norm_q", "attn1.norm_q"), ("self_attn.norm_k", "attn1.norm_k"),
        ("cross_attn.q", "attn2.to_q"), ("cross_attn.k", "attn2.to_k"), ("cross_attn.v", "attn2.to_v"),
        ("cross_attn.o", "attn2.to_out.0"), ("cross_attn.norm_q", "attn2.norm_q"), ("cross_attn.norm_k", "attn2.norm_k"),
    ]

    static func diffusersDiTKey(_ key: String) -> String {
        diffusersDiTRenames.reduce(key) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
    }

    /// Wan t5.py -> transformers UMT5EncoderModel names (`shared.weight` holds the tied embedding).
    static func transformersT5Key(_ key: String) -> String {
        if key == "token_embedding.weight" { return "shared.weight" }
        if key == "norm.weight" { return "encoder.final_layer_norm.weight" }
        let renames = [(".attn.", ".layer.0.SelfAttention."), (".pos_embedding.embedding.", ".layer.0.SelfAttention.relative_attention_bias."),
                       (".norm1.", ".layer.0.layer_norm."), (".ffn.gate.0.", ".layer.1.DenseReluDense.wi_0."),
                       (".ffn.fc1.", ".layer.1.DenseReluDense.wi_1."), (".ffn.fc2.", ".layer.1.DenseReluDense.wo."),
                       (".norm2.", ".layer.1.layer_norm.")]
        return renames.reduce("encoder." + key.replacingOccurrences(of: "blocks.", with: "block.")) {
            $0.replacingOccurrences(of: $1.0, with: $1.1)
        }
    }

    /// Wan -> diffusers AutoencoderKLWan names, as diffusers scripts/convert_wan_to_diffusers.py convert_vae
    /// maps them (a decoder stage is numResBlocks + 1 residual blocks, then its upsampler).
    static func diffusersVAEKey(_ key: String) -> String {
        let tops = ["conv1.": "quant_conv.", "conv2.": "post_quant_conv."]
        for (wan, diffusers) in tops where key.hasPrefix(wan) { return diffusers + key.dropFirst(wan.count) }
        var k = key
        let residual = [(".residual.0.gamma", ".norm1.gamma"), (".residual.2.", ".conv1."), (".residual.3.gamma", ".norm2.gamma"),
                        (".residual.6.", ".conv2."), (".shortcut.", ".conv_shortcut.")]
        k = k.replacingOccurrences(of: ".middle.0.", with: ".mid_block.resnets.0.")
            .replacingOccurrences(of: ".middle.1.", with: ".mid_block.attentions.0.")
            .replacingOccurrences(of: ".middle.2.", with: ".mid_block.resnets.1.")
            .replacingOccurrences(of: ".head.0.", with: ".norm_out.").replacingOccurrences(of: ".head.2.", with: ".conv_out.")
            .replacingOccurrences(of: "encoder.conv1.", with: "encoder.conv_in.")
            .replacingOccurrences(of: "decoder.conv1.", with: "decoder.conv_in.")
            .replacingOccurrences(of: "encoder.downsamples.", with: "encoder.down_blocks.")
        if k.hasPrefix("decoder.upsamples.") {
            let parts = k.split(separator: ".", maxSplits: 3).map(String.init)   // decoder, upsamples, N, rest
            let index = Int(parts[2])!, perStage = Self.vae.numResBlocks + 2
            let (stage, j) = (index / perStage, index % perStage)
            k = j == perStage - 1 ? "decoder.up_blocks.\(stage).upsamplers.0.\(parts[3])"
                : "decoder.up_blocks.\(stage).resnets.\(j).\(parts[3])"
        }
        return residual.reduce(k) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
    }

    // MARK: - Writers

    /// A safetensors file of `tensors` stored as `dtype`.
    func writeSafetensors(_ tensors: [(String, Tensor)], to relative: String, dtype: DType = .f32,
                          metadata: [String: String] = ["format": "pt"]) throws {
        let url = root.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        var w = SafetensorsWriter()
        for (name, t) in tensors { try w.add(name, dtype == .f32 ? t : try backend.cast(t, to: dtype)) }
        w.metadata = metadata
        try w.write(to: url.path)
    }

    /// Shards named `<stem>-0000i-of-0000n.safetensors` and `<stem>.safetensors.index.json`, as
    /// Hugging Face's save_pretrained writes them.
    func writeSharded(_ tensors: [(String, Tensor)], folder: String, stem: String, shards: Int, dtype: DType = .f32) throws {
        var weightMap: [String: String] = [:]
        var total = 0
        let per = (tensors.count + shards - 1) / shards
        for s in 0..<shards {
            let name = String(format: "%@-%05d-of-%05d.safetensors", stem, s + 1, shards)
            let part = Array(tensors[min(s * per, tensors.count)..<min((s + 1) * per, tensors.count)])
            try writeSafetensors(part, to: "\(folder)/\(name)", dtype: dtype)
            for (key, t) in part { weightMap[key] = name; total += t.shape.count * dtype.size }
        }
        let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
        try writeJSON(index, to: "\(folder)/\(stem).safetensors.index.json")
    }

    /// A `torch.save` checkpoint of `value`.
    func writeTorch(_ value: TorchValue, to relative: String) throws {
        let url = root.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let stem = url.deletingPathExtension().lastPathComponent
        try Data(TorchSave.archive(value, name: stem)).write(to: url)
    }

    /// A state dict of `tensors` stored as `dtype`, keys prefixed.
    func stateDict(_ tensors: [(String, Tensor)], prefix: String = "", dtype: DType = .f32) throws -> TorchValue {
        .stateDict(try tensors.map { name, t in
            (prefix + name, try TorchValue.tensor(try t.toFloats(), shape: t.shape.dims, as: dtype))
        })
    }

    func writeJSON(_ object: Any, to relative: String) throws {
        let url = root.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]).write(to: url)
    }

    func copyTokenizer(to relative: String) throws {
        let dir = root.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for name in ["spiece.model", "tokenizer.json"] {
            try FileManager.default.copyItem(at: Self.tokenizerFolder.appendingPathComponent(name), to: dir.appendingPathComponent(name))
        }
    }

    // MARK: - Folders

    /// Wan-AI/Wan2.1-T2V-1.3B's layout (`sharded`: -14B's, the DiT in shards with an index):
    /// config.json, diffusion_pytorch_model*.safetensors (f32, as Wan-AI ships them),
    /// models_t5_umt5-xxl-enc-bf16.pth (bf16), Wan2.1_VAE.pth, google/umt5-xxl/.
    @discardableResult
    func wanFolder(_ relative: String, sharded: Bool = false) throws -> String {
        let c = Self.dit
        try writeJSON(["_class_name": "WanModel", "_diffusers_version": "0.30.0", "dim": c.dim, "eps": 1e-06, "ffn_dim": c.ffnDim,
                       "freq_dim": c.freqDim, "in_dim": c.inChannels, "model_type": "t2v", "num_heads": c.heads,
                       "num_layers": c.layers, "out_dim": c.outChannels, "text_len": 512], to: "\(relative)/config.json")
        if sharded {
            try writeSharded(try ditWeights(), folder: relative, stem: "diffusion_pytorch_model", shards: 2)
        } else {
            try writeSafetensors(try ditWeights(), to: "\(relative)/diffusion_pytorch_model.safetensors")
        }
        try writeTorch(try stateDict(try textEncoderWeights(), dtype: .bf16), to: "\(relative)/models_t5_umt5-xxl-enc-bf16.pth")
        try writeTorch(try stateDict(try vaeWeights()), to: "\(relative)/Wan2.1_VAE.pth")
        try copyTokenizer(to: "\(relative)/google/umt5-xxl")
        return path(relative)
    }

    /// Wan-AI/Wan2.1-T2V-1.3B-Diffusers' layout: model_index.json, transformer/ (sharded, bf16),
    /// text_encoder/ (transformers UMT5EncoderModel, sharded), tokenizer/, vae/ (AutoencoderKLWan).
    @discardableResult
    func diffusersFolder(_ relative: String) throws -> String {
        let c = Self.dit
        try writeJSON(["_class_name": "WanPipeline", "_diffusers_version": "0.33.0",
                       "scheduler": ["diffusers", "UniPCMultistepScheduler"], "text_encoder": ["transformers", "UMT5EncoderModel"],
                       "tokenizer": ["transformers", "T5TokenizerFast"], "transformer": ["diffusers", "WanTransformer3DModel"],
                       "vae": ["diffusers", "AutoencoderKLWan"]], to: "\(relative)/model_index.json")
        try writeJSON(["_class_name": "WanTransformer3DModel", "added_kv_proj_dim": NSNull(), "attention_head_dim": c.dim / c.heads,
                       "cross_attn_norm": true, "eps": 1e-06, "ffn_dim": c.ffnDim, "freq_dim": c.freqDim, "in_channels": c.inChannels,
                       "num_attention_heads": c.heads, "num_layers": c.layers, "out_channels": c.outChannels,
                       "patch_size": [1, 2, 2], "qk_norm": "rms_norm_across_heads", "text_dim": c.textDim],
                      to: "\(relative)/transformer/config.json")
        try writeSharded(try ditWeights().map { (Self.diffusersDiTKey($0.0), $0.1) }, folder: "\(relative)/transformer",
                         stem: "diffusion_pytorch_model", shards: 2, dtype: .bf16)
        try writeJSON(["architectures": ["UMT5EncoderModel"], "d_model": Self.umt5.dim, "num_layers": Self.umt5.layers],
                      to: "\(relative)/text_encoder/config.json")
        try writeSharded(try textEncoderWeights().map { (Self.transformersT5Key($0.0), $0.1) }, folder: "\(relative)/text_encoder",
                         stem: "model", shards: 2)
        try copyTokenizer(to: "\(relative)/tokenizer")
        try writeJSON(["_class_name": "AutoencoderKLWan", "base_dim": Self.vae.baseDim, "z_dim": Self.vae.zDim],
                      to: "\(relative)/vae/config.json")
        try writeSafetensors(try vaeWeights().map { (Self.diffusersVAEKey($0.0), $0.1) },
                             to: "\(relative)/vae/diffusion_pytorch_model.safetensors")
        return path(relative)
    }

    /// Efficient-Large-Model/LongLive's layout: models/longlive_base.pt (the wrapper's state dict,
    /// `model.` names, under "generator") and models/lora.pt (PEFT names under "generator_lora").
    @discardableResult
    func longLiveFolder(_ relative: String) throws -> String {
        try writeTorch(.dict([("generator", try stateDict(try ditWeights(seed: 7), prefix: "model.", dtype: .bf16))]),
                       to: "\(relative)/models/longlive_base.pt")
        try writeTorch(.dict([("generator_lora", try stateDict(try loraWeights(), dtype: .bf16))]), to: "\(relative)/models/lora.pt")
        return path(relative)
    }

    /// gdhe17/Self-Forcing's checkpoints/self_forcing_dmd.pt ("generator" and "generator_ema", `model.`
    /// names) with checkpoints/taew2_1.pth beside it, where Self-Forcing's demo.py keeps it.
    @discardableResult
    func selfForcingFolder(_ relative: String, checkpoint: String = "self_forcing_dmd.pt") throws -> String {
        try writeTorch(.dict([("generator", try stateDict(try ditWeights(seed: 8), prefix: "model.", dtype: .bf16)),
                              ("generator_ema", try stateDict(try ditWeights(seed: 9), prefix: "model.", dtype: .bf16))]),
                       to: "\(relative)/checkpoints/\(checkpoint)")
        try writeTorch(try stateDict(try taehvWeights()), to: "\(relative)/checkpoints/taew2_1.pth")
        return path(relative)
    }

    /// tianweiy/CausVid's autoregressive_checkpoint/model.pt ("generator", `model.` names).
    @discardableResult
    func causVidFolder(_ relative: String) throws -> String {
        try writeTorch(.dict([("generator", try stateDict(try ditWeights(seed: 10), prefix: "model.", dtype: .bf16))]),
                       to: "\(relative)/model.pt")
        return path(relative)
    }
}
