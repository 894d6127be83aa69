import ReelCore

/// The two key layouts of Wan2.1 VAE checkpoints. Reel binds Wan's own names (canonical);
/// diffusers' names are renamed into them by rules.
///
/// Wan (`Wan2.1_VAE.pth`, or a safetensors file with the same keys):
/// `conv1` (quant), `conv2` (post-quant), `{encoder,decoder}.conv1`, `.middle.{0,1,2}`,
/// `encoder.downsamples.N`, `decoder.upsamples.N` (flat lists of residual blocks and resamples),
/// `.head.{0,2}`; residual blocks hold `residual.{0,2,3,6}` and `shortcut`.
///
/// diffusers (`AutoencoderKLWan`, `vae/diffusion_pytorch_model.safetensors`):
/// `quant_conv`, `post_quant_conv`, `conv_in`, `mid_block.{resnets,attentions}`, `down_blocks.N`,
/// `up_blocks.i.{resnets.j,upsamplers.0}`, `norm_out`, `conv_out`; residual blocks hold
/// `norm1`, `conv1`, `norm2`, `conv2`, `conv_shortcut`.
public enum WanVAEKeyLayout: String, Sendable {
    case wan
    case diffusers

    /// Detects the layout from the keys; throws when they look like neither.
    public static func detect(_ keys: [String], path: String) throws -> WanVAEKeyLayout {
        let diffusers = keys.contains { $0.contains("mid_block.") || $0.hasPrefix("post_quant_conv.") || $0.contains(".up_blocks.") }
        let wan = keys.contains { $0.contains(".middle.") || $0.hasPrefix("conv2.") || $0.contains(".upsamples.") }
        switch (wan, diffusers) {
        case (true, false): return .wan
        case (false, true): return .diffusers
        case (true, true):
            throw ReelError.weights(message: "\(path): mixes Wan keys (decoder.middle...) and diffusers keys (mid_block...)")
        case (false, false):
            let sample = keys.prefix(4).joined(separator: ", ")
            throw ReelError.weights(message: "\(path): not a Wan VAE checkpoint (no decoder.middle / mid_block keys; first keys: \(sample))")
        }
    }

    /// Rules renaming this layout's keys into Wan's. `numResBlocks` is the encoder's count per stage
    /// (a decoder stage has one more, then its resample).
    public func rules(numResBlocks r: Int = 2) -> [KeyRule] {
        switch self {
        case .wan:
            return []
        case .diffusers:
            let perStage = r + 2   // decoder: (r + 1) residual blocks + 1 resample per stage
            return [
                // inside residual blocks (before the top-level conv renames below)
                .substring(".norm1.gamma", ".residual.0.gamma"),
                .substring(".conv1.", ".residual.2."),
                .substring(".norm2.gamma", ".residual.3.gamma"),
                .substring(".conv2.", ".residual.6."),
                .substring(".conv_shortcut.", ".shortcut."),
                // middle
                .substring(".mid_block.resnets.0.", ".middle.0."),
                .substring(".mid_block.attentions.0.", ".middle.1."),
                .substring(".mid_block.resnets.1.", ".middle.2."),
                // stages
                .prefix("encoder.down_blocks.", "encoder.downsamples."),
                .indexed("decoder.up_blocks.#.resnets.#.") { "decoder.upsamples.\($0[0] * perStage + $0[1])." },
                .indexed("decoder.up_blocks.#.upsamplers.0.") { "decoder.upsamples.\($0[0] * perStage + r + 1)." },
                // ends
                .substring(".conv_in.", ".conv1."),
                .substring(".norm_out.", ".head.0."),
                .substring(".conv_out.", ".head.2."),
                .prefix("post_quant_conv.", "conv2."),
                .prefix("quant_conv.", "conv1."),
            ]
        }
    }
}
