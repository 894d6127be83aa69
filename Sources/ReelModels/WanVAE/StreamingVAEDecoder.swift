import ReelCore

/// Decodes a stream of latents with a Wan VAE (Wan2.1's or Wan2.2's), block by block, with Wan's exact chunked-causal
/// state machine: latent 0 alone gives 1 frame, every later latent 4 frames (T latents -> 4T - 3
/// frames in total), the same frames as decoding the whole latent video at once with Wan's `decode`.
///
/// Between calls it keeps only the last 2 input frames of each causal conv (CACHE_T = 2) and the
/// time-conv phase of each temporal upsample, so memory is flat over arbitrarily long streams.
public final class StreamingVAEDecoder: VideoDecoder {
    public let model: WanVAEDecoder
    /// Latent frames decoded together, at most (after latent 0, which is always alone). 1 is Wan's
    /// own schedule and needs the least memory (a 480x832 chunk of 1 latent peaks at ~4 frames of
    /// 96 x 480 x 832 activations); larger chunks give a GPU bigger ops. The frames do not depend on it.
    public var maxLatentFramesPerChunk: Int
    /// Frames at a time through the stages after the last time upsampling (0: a whole chunk at once;
    /// default 1, or `REEL_VAE_SLICE_FRAMES`): 1 keeps a quarter of the full-resolution activations
    /// alive. The frames do not depend on it.
    public var sliceFrames: Int
    /// Latent frames decoded since the stream started.
    public private(set) var latentFramesDecoded = 0
    private var cache: CausalCache

    /// A new stream over `model`'s weights (several streams may share one model).
    /// - Parameter sliceFrames: frames per slice of the full-resolution layers (default: the backend's `Tuning`).
    public init(model: WanVAEDecoder, maxLatentFramesPerChunk: Int = 1, sliceFrames: Int? = nil) {
        self.model = model
        self.maxLatentFramesPerChunk = max(1, maxLatentFramesPerChunk)
        self.sliceFrames = max(0, sliceFrames ?? model.backend.tuning.vaeSliceFrames)
        cache = CausalCache(count: model.slotCount)
    }

    public var latentChannels: Int { model.config.zDim }
    public var spatialStride: Int { model.config.spatialStride }

    /// Bytes held by the stream's cache (the last frames of each causal conv): constant once every
    /// temporal layer has seen two chunks, however long the stream runs.
    public var stateByteCount: Int {
        cache.slots.reduce(0) { sum, slot in
            switch slot {
            case let .frames(runs): sum + runs.reduce(0) { $0 + $1.storage.byteCount }
            case let .pair(frames, _): sum + frames.storage.byteCount
            case .empty, .rep: sum
            }
        }
    }

    public func reset() {
        cache.reset()
        latentFramesDecoded = 0
    }

    /// Decodes the next block `[N, T, h, w, z]` of normalized latents into `[N, T', sh, sw, 3]`
    /// frames in [-1, 1] (s = `spatialStride`, 8 or 16; T' = 4T, or 4T - 3 for the stream's first block).
    public func decode(_ latents: Tensor) throws -> Tensor {
        try checkLatents(latents, op: "StreamingVAEDecoder.decode")
        let b = latents.backend   // ops run on the stream the latents are issued on
        let x = try model.prepare(latents)                                       // [N, T, h, w, z]
        var outputs: [Tensor] = []
        var start = 0
        while start < x.shape[1] {
            // Latent 0 is a chunk of its own: Wan's first chunk skips the temporal upsampling.
            let length = latentFramesDecoded == 0 ? 1 : min(maxLatentFramesPerChunk, x.shape[1] - start)
            let chunk = length == x.shape[1] ? x : try b.slice(x, axis: 1, start: start, length: length)
            outputs.append(try model.forward(chunk, cache: &cache, sliceFrames: sliceFrames))
            latentFramesDecoded += length
            start += length
        }
        return outputs.count == 1 ? outputs[0] : try b.concat(outputs, axis: 1)
    }
}
