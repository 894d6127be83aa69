import ReelCore

/// The two key layouts of Wan VAE checkpoints (Wan2.1 and Wan2.2). Reel binds Wan's own names (canonical);
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
///
/// Wan2.2 (`Wan2.2_VAE.pth`, vae2_2.py) nests each stage: `encoder.downsamples.i.downsamples.j` (j < r: residual
/// blocks, j = r: the resample), `decoder.upsamples.i.upsamples.j` (j <= r, then j = r + 1: the resample); the
/// shortcuts have no weights. diffusers (`AutoencoderKLWan(is_residual=True)`, autoencoder_kl_wan.py
/// `WanResidualDownBlock` / `WanResidualUpBlock`): `encoder.down_blocks.i.{resnets.j, downsampler}`,
/// `decoder.up_blocks.i.{resnets.j, upsampler}`.
public enum WanVAEKeyLayout: String, Sendable {
    case wan
    case diffusers

    /// Detects the layout from the keys; throws when they look like neither.
    public static func detect(_ keys: [String]) throws -> WanVAEKeyLayout {
        let diffusers = keys.contains { $0.contains("mid_block.") || $0.hasPrefix("post_quant_conv.") || $0.contains(".up_blocks.") }
        let wan = keys.contains { $0.contains(".middle.") || $0.hasPrefix("conv2.") || $0.contains(".upsamples.") }
        switch (wan, diffusers) {
        case (true, false): return .wan
        case (false, true): return .diffusers
        case (true, true):
            throw ReelError.weights(message: "mixes Wan keys (decoder.middle...) and diffusers keys (mid_block...)")
        case (false, false):
            let sample = keys.prefix(4).joined(separator: ", ")
            let tiny = keys.contains("decoder.1.weight") ? "; it looks like TAEHV tiny decoder weights (reel decode --tiny)" : ""
            throw ReelError.weights(message: "not a Wan VAE checkpoint (no decoder.middle / mid_block keys; first keys: \(sample))\(tiny)")
        }
    }

    /// Rules renaming this layout's keys into Wan's, for a model of `config`'s stage and block counts
    /// (a decoder stage has `numResBlocks + 1` residual blocks, then its resample).
    public func rules(config: WanVAEConfig) -> [KeyRule] {
        switch self {
        case .wan:
            return []
        case .diffusers:
            let r = config.numResBlocks
            let perStage = r + 2   // decoder: (r + 1) residual blocks + 1 resample per stage
            // diffusers nests the decoder's flat list as up_blocks.i.{resnets.j, upsamplers.0}; Wan2.2's nesting
            // (both stacks) is up_blocks.i.{resnets.j, upsampler} and down_blocks.i.{resnets.j, downsampler}.
            var stages: [KeyRule] = [], encoder: [KeyRule] = []   // (Wan2.2's encoder stages: before Wan2.1's flat rule)
            for i in 0..<config.dimMult.count {
                for j in 0...r {
                    let key = config.decoderLayerKey(stage: i, block: j, flatIndex: i * perStage + j)
                    stages.append(.replace("decoder.up_blocks.\(i).resnets.\(j).", key + "."))
                }
                let resample = config.decoderLayerKey(stage: i, block: r + 1, flatIndex: i * perStage + r + 1)
                let upsampler = config.isResidual ? "decoder.up_blocks.\(i).upsampler." : "decoder.up_blocks.\(i).upsamplers.0."
                stages.append(.replace(upsampler, resample + "."))
                if config.isResidual {
                    func wan(_ j: Int) -> String { config.encoderLayerKey(stage: i, block: j, flatIndex: 0) + "." }
                    for j in 0..<r { encoder.append(.replace("encoder.down_blocks.\(i).resnets.\(j).", wan(j))) }
                    encoder.append(.replace("encoder.down_blocks.\(i).downsampler.", wan(r)))
                }
            }
            return encoder + [
                // inside residual blocks (before the top-level conv renames below)
                .replace(".norm1.gamma", ".residual.0.gamma"),
                .replace(".conv1.", ".residual.2."),
                .replace(".norm2.gamma", ".residual.3.gamma"),
                .replace(".conv2.", ".residual.6."),
                .replace(".conv_shortcut.", ".shortcut."),
                // middle
                .replace(".mid_block.resnets.0.", ".middle.0."),
                .replace(".mid_block.attentions.0.", ".middle.1."),
                .replace(".mid_block.resnets.1.", ".middle.2."),
                // stages
                .replaceIn(prefix: "encoder.down_blocks.", "encoder.down_blocks.", "encoder.downsamples."),
                // ends
                .replace(".conv_in.", ".conv1."),
                .replace(".norm_out.", ".head.0."),
                .replace(".conv_out.", ".head.2."),
                .rename("post_quant_conv.weight", "conv2.weight"),
                .rename("post_quant_conv.bias", "conv2.bias"),
                .rename("quant_conv.weight", "conv1.weight"),
                .rename("quant_conv.bias", "conv1.bias"),
            ] + stages
        }
    }
}
