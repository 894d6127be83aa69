import ReelCore

/// Turns video frames into DiT latents, streaming: the inverse of `VideoDecoder`, with the same frame
/// count rule over a stream (latent 0 from frame 0, every later latent from the next 4 frames: 4T - 3
/// frames give T latents). Implemented by the Wan VAE encoder (`StreamingVAEEncoder`) and the TAEHV
/// encoder (`StreamingTAEHVEncoder`).
public protocol VideoEncoder: AnyObject {
    /// Channels of the latents it makes (16 for Wan2.1).
    var latentChannels: Int { get }
    /// Video pixels per latent cell along H and W (8).
    var spatialStride: Int { get }
    /// The dtype its weights compute in: frames uploaded in it skip a cast (frames in another dtype are cast).
    var dtype: DType { get }

    /// Takes the next frames `[N, T, H, W, 3]` in [-1, 1] and returns the normalized latents
    /// `[N, k, H/8, W/8, C]` of every latent frame they complete (nil when none yet).
    func encode(_ frames: Tensor) throws -> Tensor?

    /// Forgets the stream: the next frame is frame 0 of a new video.
    func reset()
}

extension StreamingVAEEncoder: VideoEncoder {
    public var latentChannels: Int { model.config.zDim }
    public var spatialStride: Int { model.config.spatialStride }
    public var dtype: DType { model.dtype }
}

/// The TAEHV encoder with the stream start that Reel's TAEHV decoder undoes: taehv.py makes latent j from
/// frames 4j ..< 4j + 4, and its decoder's first 3 output frames are dropped (`StreamingTinyDecoder`), so a
/// stream's frame 0 goes in 4 times (three copies first), as the tiny model was trained
/// (training/tiny/decoder.py, `frame_groups`). 4T - 3 frames then give T latents, as with the Wan VAE.
public final class StreamingTAEHVEncoder: VideoEncoder {
    public let stream: StreamingTinyEncoder
    private var started = false

    public init(model: TinyEncoder) { stream = StreamingTinyEncoder(model: model) }

    public var latentChannels: Int { stream.latentChannels }
    public var spatialStride: Int { stream.spatialStride }
    public var dtype: DType { stream.model.dtype }

    public func encode(_ frames: Tensor) throws -> Tensor? {
        try require(frames.rank == 5 && frames.shape[1] >= 1, "StreamingTAEHVEncoder.encode",
                    "expected frames [N, T, H, W, 3] with T >= 1, got \(frames.shape)")
        guard !started else { return try stream.encode(frames) }
        let b = frames.backend
        let first = try b.slice(frames, axis: 1, start: 0, length: 1)
        let out = try stream.encode(try b.concat([first, first, first, frames], axis: 1))
        started = true
        return out
    }

    public func reset() {
        stream.reset()
        started = false
    }
}
