import Foundation
import ReelCore
import ReelIO
import ReelModels

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
}
