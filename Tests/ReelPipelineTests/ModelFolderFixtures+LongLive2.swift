import Foundation
import ReelCore
import ReelIO
import ReelModels
import ReelTestSupport

/// A LongLive 2.0 model in Reel's folder layout, with random weights of a tiny Wan2.2-TI2V-5B-shaped architecture:
/// the DiT's 48 latent channels in and out and 1x2x2 patches, the Wan2.2 VAE's structure (residual, 2x2 patching,
/// 16-pixel stride, 48 channels) at small widths, and the 1.0 fixtures' umT5 and tokenizer.
extension ModelFolderFixtures {
    static let dit5B = WanDiTConfig(dim: 64, ffnDim: 128, heads: 2, layers: 2, inChannels: 48, outChannels: 48, textDim: 32)
    static let vae22: WanVAEConfig = {
        var c = WanVAEConfig.wan22
        c.baseDim = 4
        c.decoderBaseDim = 8
        return c
    }()

    /// dit.safetensors, text_encoder.safetensors, tokenizer.json / spiece.model, vae.safetensors (the Wan2.2 VAE's
    /// encoder and decoder in vae2_2.py's names), reel.json (heads: dim / 128 would not give 2).
    @discardableResult
    func longLive2Folder(_ relative: String) throws -> String {
        try writeSafetensors(try Self.sorted(WanDiT.randomWeights(Self.dit5B, on: backend, seed: 11)), to: "\(relative)/dit.safetensors")
        try writeSafetensors(try textEncoderWeights(), to: "\(relative)/text_encoder.safetensors")
        let decoder = try WanVAEDecoder.randomWeights(Self.vae22, on: backend, seed: 12).tensors
        let encoder = try WanVAEEncoder.randomWeights(Self.vae22, on: backend, seed: 13).tensors
        let vae = decoder.merging(encoder) { a, _ in a }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        try writeSafetensors(vae, to: "\(relative)/vae.safetensors")
        try copyTokenizer(to: relative)
        try writeJSON(["heads": Self.dit5B.heads], to: "\(relative)/reel.json")
        return path(relative)
    }

    /// The tiny 2.0 DiT's weights (Wan key names), sorted by key.
    func dit5BWeights(seed: UInt64 = 11) throws -> [(String, Tensor)] {
        try Self.sorted(WanDiT.randomWeights(Self.dit5B, on: backend, seed: seed))
    }

    /// The Wan2.2 VAE's encoder and decoder in vae2_2.py's names.
    func vae22Weights() throws -> [(String, Tensor)] {
        let decoder = try WanVAEDecoder.randomWeights(Self.vae22, on: backend, seed: 12).tensors
        let encoder = try WanVAEEncoder.randomWeights(Self.vae22, on: backend, seed: 13).tensors
        return decoder.merging(encoder) { a, _ in a }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Wan-AI/Wan2.2-TI2V-5B's layout at the tiny 2.0 shapes: config.json (`model_type` ti2v, `in_dim`/`out_dim`
    /// 48), diffusion_pytorch_model.safetensors (f32), models_t5_umt5-xxl-enc-bf16.pth (bf16), Wan2.2_VAE.pth,
    /// google/umt5-xxl/.
    @discardableResult
    func wan22Folder(_ relative: String) throws -> String {
        let c = Self.dit5B
        try writeJSON(["_class_name": "WanModel", "_diffusers_version": "0.33.0", "dim": c.dim, "eps": 1e-06, "ffn_dim": c.ffnDim,
                       "freq_dim": c.freqDim, "in_dim": c.inChannels, "model_type": "ti2v", "num_heads": c.heads,
                       "num_layers": c.layers, "out_dim": c.outChannels, "text_len": 512], to: "\(relative)/config.json")
        try writeSafetensors(try dit5BWeights(seed: 21), to: "\(relative)/diffusion_pytorch_model.safetensors")
        try writeTorch(try stateDict(try textEncoderWeights(), dtype: .bf16), to: "\(relative)/models_t5_umt5-xxl-enc-bf16.pth")
        try writeTorch(try stateDict(try vae22Weights()), to: "\(relative)/Wan2.2_VAE.pth")
        try copyTokenizer(to: "\(relative)/google/umt5-xxl")
        return path(relative)
    }

    /// Efficient-Large-Model/LongLive-2.0-5B's layout: model_bf16.pt, the merged generator as
    /// scripts/merge_lora_generator.py saves it (the wrapper's state dict, `model.` names, bf16, under "generator",
    /// with its string and bool metadata). `merged` false: configs/inference.yaml's unmerged pair instead,
    /// generator_checkpoint.pt ("generator") and lora_checkpoint.pt (PEFT names under "generator_lora").
    @discardableResult
    func longLive2ReleaseFolder(_ relative: String, merged: Bool = true, seed: UInt64 = 11) throws -> String {
        let generator = try stateDict(try dit5BWeights(seed: seed), prefix: "model.", dtype: .bf16)
        if merged {
            try writeTorch(.dict([("generator", generator), ("checkpoint_format", .string("longlive_generator_merged_lora")),
                                  ("source_generator_ckpt", .string("/path/to/longlive2/generator_checkpoint.pt")),
                                  ("source_lora_ckpt", .string("/path/to/longlive2/lora_checkpoint.pt")),
                                  ("model_name", .string("Wan2.2-TI2V-5B")), ("dtype", .string("bfloat16")),
                                  ("merged_lora", .bool(true))]), to: "\(relative)/model_bf16.pt")
        } else {
            try writeTorch(.dict([("generator", generator)]), to: "\(relative)/generator_checkpoint.pt")
            try writeTorch(.dict([("generator_lora", try stateDict(try loraWeights(Self.dit5B), dtype: .bf16))]),
                           to: "\(relative)/lora_checkpoint.pt")
        }
        return path(relative)
    }
}
