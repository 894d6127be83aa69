import ReelCore

/// Decodes a stream of latents with the TAEHV tiny decoder, block by block: each MemBlock keeps
/// its previous input frame between calls, and the first 3 raw frames of the stream are trimmed
/// (as taehv's `decode_video` does), so latent 0 gives 1 frame and every later latent 4.
public final class StreamingTinyDecoder: VideoDecoder {
    public let model: TinyDecoder
    private var memory: [Tensor?]
    private var trimmed = 0

    /// A new stream over `model`'s weights (several streams may share one model).
    public init(model: TinyDecoder) {
        self.model = model
        memory = Array(repeating: nil, count: model.memBlockCount)
    }

    public var latentChannels: Int { model.latentChannels }
    public var spatialStride: Int { 8 * model.patchSize }

    public func reset() {
        memory = Array(repeating: nil, count: model.memBlockCount)
        trimmed = 0
    }

    /// Decodes the next block `[N, T, h, w, z]` into frames `[N, T', 8ph, 8pw, 3]` in [-1, 1] (p: the patch size).
    public func decode(_ latents: Tensor) throws -> Tensor {
        try checkLatents(latents, op: "StreamingTinyDecoder.decode")
        let b = latents.backend
        var frames = try model.forward(latents, memory: &memory)                  // [N, 4T, H, W, 3] in [0, 1]
        let trim = min(model.framesToTrim - trimmed, frames.shape[1])
        if trim > 0 {
            frames = try b.slice(frames, axis: 1, start: trim, length: frames.shape[1] - trim)
            trimmed += trim
        }
        return try b.affine(frames, scale: 2, bias: -1)                            // [0, 1] -> [-1, 1]
    }
}
