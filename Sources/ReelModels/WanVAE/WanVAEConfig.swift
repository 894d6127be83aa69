import ReelCore

/// The Wan2.1 VAE's architecture (Wan2.1 `wan/modules/vae.py`, diffusers `AutoencoderKLWan`).
///
/// Stride (4, 8, 8): a video of 1 + 4k frames of H x W pixels has 1 + k latent frames of
/// H/8 x W/8, with `zDim` channels.
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

    enum CodingKeys: String, CodingKey {
        case baseDim = "base_dim", zDim = "z_dim", dimMult = "dim_mult", numResBlocks = "num_res_blocks"
        case temporalDownsample = "temperal_downsample", latentsMean = "latents_mean", latentsStd = "latents_std"
    }

    public init(baseDim: Int = 96, zDim: Int = 16, dimMult: [Int] = [1, 2, 4, 4], numResBlocks: Int = 2,
                temporalDownsample: [Bool] = [false, true, true],
                latentsMean: [Float] = WanVAEConfig.wan21Mean, latentsStd: [Float] = WanVAEConfig.wan21Std) {
        self.baseDim = baseDim
        self.zDim = zDim
        self.dimMult = dimMult
        self.numResBlocks = numResBlocks
        self.temporalDownsample = temporalDownsample
        self.latentsMean = latentsMean
        self.latentsStd = latentsStd
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
                  latentsStd: try c.decodeIfPresent([Float].self, forKey: .latentsStd) ?? d.latentsStd)
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

    /// Decoder temporal upsampling per stage: the encoder's, reversed ([true, true, false]).
    public var temporalUpsample: [Bool] { temporalDownsample.reversed() }

    /// Video frames per latent frame after the first (4).
    public var temporalStride: Int { 1 << temporalDownsample.filter { $0 }.count }
    /// Pixels per latent cell along H and W (8).
    public var spatialStride: Int { 1 << (dimMult.count - 1) }

    /// Throws when the configuration is inconsistent.
    public func validate() throws {
        guard baseDim > 0, zDim > 0, numResBlocks > 0, !dimMult.isEmpty, dimMult.allSatisfy({ $0 > 0 }) else {
            throw ReelError.input("Wan VAE config: dimensions must be positive (\(self))")
        }
        guard temporalDownsample.count == dimMult.count - 1 else {
            throw ReelError.input("Wan VAE config: temperal_downsample needs \(dimMult.count - 1) entries, got \(temporalDownsample.count)")
        }
        guard latentsMean.count == zDim, latentsStd.count == zDim, latentsStd.allSatisfy({ $0 > 0 }) else {
            throw ReelError.input("Wan VAE config: latents_mean and latents_std need \(zDim) entries (std > 0)")
        }
    }

    /// The Wan2.1 configuration with `baseDim` and `zDim` read from the weights (canonical Wan keys:
    /// `decoder.head.2.weight` is `[3, baseDim, 3, 3, 3]`, `conv2.weight` is `[z, z, 1, 1, 1]`).
    /// Random-weight test models of the real structure differ from Wan2.1 only in these.
    public static func detect(from binder: WeightBinder) throws -> WanVAEConfig {
        var config = WanVAEConfig.wan21
        if let head = binder.shape("decoder.head.2.weight"), head.rank == 5 {
            config.baseDim = head[1]
        } else if let head = binder.shape("encoder.conv1.weight"), head.rank == 5 {
            config.baseDim = head[0]
        } else {
            throw ReelError.weights(message: "neither decoder.head.2.weight nor encoder.conv1.weight: not a Wan VAE checkpoint")
        }
        if let conv2 = binder.shape("conv2.weight"), conv2.rank == 5 {
            config.zDim = conv2[0]
        } else if let conv1 = binder.shape("conv1.weight"), conv1.rank == 5 {
            config.zDim = conv1[0] / 2
        }
        if config.zDim != config.latentsMean.count {
            throw ReelError.weights(message: "z dim \(config.zDim) has no latent statistics (Wan2.1 has 16)")
        }
        return config
    }
}
