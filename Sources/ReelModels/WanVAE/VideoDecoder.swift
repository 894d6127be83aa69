import ReelCore

/// Turns DiT latents into video frames, one block at a time, keeping whatever state it needs
/// between blocks of one stream. Implemented by the Wan VAE (`StreamingVAEDecoder`) and the
/// TAEHV tiny decoder (`StreamingTinyDecoder`).
public protocol VideoDecoder: AnyObject {
    /// Channels of the latents it takes (16 for Wan2.1).
    var latentChannels: Int { get }
    /// Video pixels per latent cell along H and W (8).
    var spatialStride: Int { get }

    /// Decodes the next block of normalized latents `[N, T, h, w, C]` (as the DiT produces them,
    /// channel-last) into frames `[N, T', h * stride, w * stride, 3]` in [-1, 1]. Over a stream,
    /// latent 0 gives 1 frame and each later latent 4, whatever the block sizes.
    func decode(_ latents: Tensor) throws -> Tensor

    /// Forgets the stream: the next `decode` starts a new video.
    func reset()
}

extension VideoDecoder {
    /// Frames a stream of `latentFrames` latent frames decodes to: 4T - 3.
    public static func frameCount(latentFrames t: Int) -> Int { t == 0 ? 0 : 4 * t - 3 }

    /// Throws unless `latents` is `[N, T, h, w, latentChannels]` with T >= 1.
    func checkLatents(_ latents: Tensor, op: String) throws {
        try require(latents.rank == 5 && latents.shape[4] == latentChannels && latents.shape[1] >= 1
                    && latents.shape[2] >= 1 && latents.shape[3] >= 1, op,
                    "expected latents [N, T, h, w, \(latentChannels)] (channel-last, T >= 1), got \(latents.shape)")
    }
}
