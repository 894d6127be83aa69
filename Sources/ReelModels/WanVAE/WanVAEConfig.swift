import ReelCore

/// The architecture of a Wan VAE: Wan2.1's (Wan2.1 `wan/modules/vae.py`) or Wan2.2's (Wan2.2
/// `wan/modules/vae2_2.py`), both diffusers' `AutoencoderKLWan` (`is_residual` for Wan2.2).
///
/// Wan2.1: stride (4, 8, 8), 16 latent channels. Wan2.2: the video is first cut into 2x2 patches
/// (`patchSize`), the encoder and decoder stages are residual with a parameter-free shortcut around each
/// (`isResidual`), the decoder is wider than the encoder (`decoderBaseDim`): stride (4, 16, 16), 48 channels.
/// A video of 1 + 4k frames of H x W pixels has 1 + k latent frames of H/s x W/s, s = `spatialStride`.
public struct WanVAEConfig: Codable, Sendable, Equatable {
    /// Channels of the first encoder stage and the last decoder stage (96 in Wan2.1).
    public var baseDim: Int
    /// Latent channels (16).
    public var zDim: Int
    /// Channel multipliers per stage ([1, 2, 4, 4]).
    public var dimMult: [Int]
    /// Residual blocks per encoder stage; the decoder has one more per stage (2).
    public var numResBlocks: Int
    /// Which encoder downsamples also halve time ([false, true, true]); the decoder mirrors it.
    public var temporalDownsample: [Bool]
    /// Per-channel mean and standard deviation of the raw latents: the DiT's latents are
    /// normalized as (z - mean) / std.
    public var latentsMean: [Float]
    public var latentsStd: [Float]
    /// Channels of the decoder's last stage (Wan2.2: 256, wider than the encoder's 160; Wan2.1: `baseDim`).
    public var decoderBaseDim: Int
    /// Pixels per side of the square patches the video is cut into before the encoder, and that the
    /// decoder's output channels are unpacked from (Wan2.2: 2; Wan2.1: 1, none).
    public var patchSize: Int
    /// Wan2.2's residual stages: each encoder/decoder stage has a parameter-free shortcut around it
    /// (`AvgDown3D` / `DupUp3D`), the decoder's stages keep their width through the upsampling.
    public var isResidual: Bool

    enum CodingKeys: String, CodingKey {
        case baseDim = "base_dim", zDim = "z_dim", dimMult = "dim_mult", numResBlocks = "num_res_blocks"
        case temporalDownsample = "temperal_downsample", latentsMean = "latents_mean", latentsStd = "latents_std"
        case decoderBaseDim = "decoder_base_dim", patchSize = "patch_size", isResidual = "is_residual"
    }

    public init(baseDim: Int = 96, zDim: Int = 16, dimMult: [Int] = [1, 2, 4, 4], numResBlocks: Int = 2,
                temporalDownsample: [Bool] = [false, true, true],
                latentsMean: [Float] = WanVAEConfig.wan21Mean, latentsStd: [Float] = WanVAEConfig.wan21Std,
                decoderBaseDim: Int? = nil, patchSize: Int = 1, isResidual: Bool = false) {
        self.baseDim = baseDim
        self.zDim = zDim
        self.dimMult = dimMult
        self.numResBlocks = numResBlocks
        self.temporalDownsample = temporalDownsample
        self.latentsMean = latentsMean
        self.latentsStd = latentsStd
        self.decoderBaseDim = decoderBaseDim ?? baseDim
        self.patchSize = patchSize
        self.isResidual = isResidual
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = WanVAEConfig()
        self.init(baseDim: try c.decodeIfPresent(Int.self, forKey: .baseDim) ?? d.baseDim,
                  zDim: try c.decodeIfPresent(Int.self, forKey: .zDim) ?? d.zDim,
                  dimMult: try c.decodeIfPresent([Int].self, forKey: .dimMult) ?? d.dimMult,
                  numResBlocks: try c.decodeIfPresent(Int.self, forKey: .numResBlocks) ?? d.numResBlocks,
                  temporalDownsample: try c.decodeIfPresent([Bool].self, forKey: .temporalDownsample) ?? d.temporalDownsample,
                  latentsMean: try c.decodeIfPresent([Float].self, forKey: .latentsMean) ?? d.latentsMean,
                  latentsStd: try c.decodeIfPresent([Float].self, forKey: .latentsStd) ?? d.latentsStd,
                  decoderBaseDim: try c.decodeIfPresent(Int.self, forKey: .decoderBaseDim),
                  patchSize: try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? d.patchSize,
                  isResidual: try c.decodeIfPresent(Bool.self, forKey: .isResidual) ?? d.isResidual)
    }

    /// Wan2.1's VAE (73M decoder parameters).
    public static let wan21 = WanVAEConfig()

    public static let wan21Mean: [Float] = [
        -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
        0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
    ]
    public static let wan21Std: [Float] = [
        2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
        3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
    ]

    /// Wan2.2's VAE (`Wan2.2_VAE.pth`; `Wan2_2_VAE` in Wan2.2 `wan/modules/vae2_2.py`: c_dim 160, dec_dim 256,
    /// z_dim 48, temperal_downsample [False, True, True]): 555.1M decoder and 149.6M encoder parameters.
    public static let wan22 = WanVAEConfig(baseDim: 160, zDim: 48, latentsMean: wan22Mean, latentsStd: wan22Std,
                                           decoderBaseDim: 256, patchSize: 2, isResidual: true)

    /// Wan2.2's latent statistics (Wan2.2 `wan/modules/vae2_2.py`, `Wan2_2_VAE.__init__`; the same in
    /// LongLive `utils/wan_5b_wrapper.py`, `WanVAEWrapper`).
    public static let wan22Mean: [Float] = [
        -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
        0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
        -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
        -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
    ]
    public static let wan22Std: [Float] = [
        0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
        0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
        0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
        0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
    ]

    /// "Wan2.1 VAE" or "Wan2.2 VAE".
    public var name: String { isResidual ? "Wan2.2 VAE" : "Wan2.1 VAE" }

    /// Channels of the video as the encoder takes it and the decoder gives it: RGB, times the patch's pixels.
    public var pixelChannels: Int { 3 * patchSize * patchSize }

    /// Decoder temporal upsampling per stage: the encoder's, reversed ([true, true, false]).
    public var temporalUpsample: [Bool] { temporalDownsample.reversed() }

    /// Video frames per latent frame after the first (4).
    public var temporalStride: Int { 1 << temporalDownsample.filter { $0 }.count }
    /// Pixels per latent cell along H and W (8; 16 for Wan2.2).
    public var spatialStride: Int { patchSize << (dimMult.count - 1) }

    /// Throws when the configuration is inconsistent.
    public func validate() throws {
        guard baseDim > 0, decoderBaseDim > 0, patchSize > 0, zDim > 0, numResBlocks > 0, !dimMult.isEmpty,
              dimMult.allSatisfy({ $0 > 0 }) else {
            throw ReelError.input("Wan VAE config: dimensions must be positive (\(self))")
        }
        guard temporalDownsample.count == dimMult.count - 1 else {
            throw ReelError.input("Wan VAE config: temperal_downsample needs \(dimMult.count - 1) entries, got \(temporalDownsample.count)")
        }
        guard latentsMean.count == zDim, latentsStd.count == zDim, latentsStd.allSatisfy({ $0 > 0 }) else {
            throw ReelError.input("Wan VAE config: latents_mean and latents_std need \(zDim) entries (std > 0)")
        }
    }

    /// Whether `keys` (either layout) are Wan2.2's residual VAE: its stages nest their blocks
    /// (Wan: `decoder.upsamples.0.upsamples.0`, diffusers: `up_blocks.0.upsampler` / `down_blocks.0.resnets`).
    public static func isResidual(keys: [String]) -> Bool {
        keys.contains {
            $0.contains(".upsamples.0.upsamples.") || $0.contains(".downsamples.0.downsamples.")
                || $0.contains(".upsampler.") || $0.contains(".downsampler.") || $0.contains("down_blocks.0.resnets.")
        }
    }

    /// The configuration of the Wan VAE whose keys (either layout) are `keys`, before any shape is read:
    /// Wan2.2's or Wan2.1's.
    public static func family(keys: [String]) -> WanVAEConfig { isResidual(keys: keys) ? .wan22 : .wan21 }

    /// `base` (`family(keys:)`) with the widths read from the weights (canonical Wan keys):
    /// `decoder.head.2.weight` is `[3 p^2, decoderBaseDim, 3, 3, 3]`, `encoder.conv1.weight` is
    /// `[baseDim, 3 p^2, 3, 3, 3]`, `conv2.weight` is `[z, z, 1, 1, 1]` (or `conv1.weight` `[2z, 2z, ...]`).
    /// Random-weight test models of the real structure differ from the released ones only in these.
    public static func detect(from binder: WeightBinder, base: WanVAEConfig = .wan21) throws -> WanVAEConfig {
        var config = base
        let head = binder.shape("decoder.head.2.weight"), input = binder.shape("encoder.conv1.weight")
        guard head?.rank == 5 || input?.rank == 5 else {
            throw ReelError.weights(message: "neither decoder.head.2.weight nor encoder.conv1.weight: not a Wan VAE checkpoint")
        }
        if let input, input.rank == 5 { config.baseDim = input[0] }
        if let head, head.rank == 5 {
            config.decoderBaseDim = head[1]
            if input == nil && !base.isResidual { config.baseDim = head[1] }
        } else if !base.isResidual {
            config.decoderBaseDim = config.baseDim
        }
        let pixels = head?.rank == 5 ? head![0] : input![1]
        guard pixels == config.pixelChannels else {
            throw ReelError.weights(message: "\(config.name) takes \(config.pixelChannels) pixel channels "
                                    + "(patch \(config.patchSize)), the weights have \(pixels)")
        }
        if let conv2 = binder.shape("conv2.weight"), conv2.rank == 5 {
            config.zDim = conv2[0]
        } else if let conv1 = binder.shape("conv1.weight"), conv1.rank == 5 {
            config.zDim = conv1[0] / 2
        }
        if config.zDim != config.latentsMean.count {
            throw ReelError.weights(message: "z dim \(config.zDim) has no latent statistics "
                                    + "(\(config.name) has \(config.latentsMean.count))")
        }
        return config
    }
}
