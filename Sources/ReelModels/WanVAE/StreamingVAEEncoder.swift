import ReelCore

/// Encodes a stream of video frames with a Wan VAE encoder (Wan2.1's or Wan2.2's), block by block, for live
/// video-to-video: frame 0 alone gives latent 0, then every 4 frames give one latent (Wan's chunks
/// of 1, 4, 4, ...). Frames that do not complete a chunk wait for the next call. Between calls it
/// keeps the causal convs' last frames, so memory is flat over long streams.
public final class StreamingVAEEncoder {
    public let model: WanVAEEncoder
    private var cache: CausalCache
    private var pending: Tensor?
    private var frameSize: (h: Int, w: Int, n: Int)?
    /// Latent frames produced since the stream started.
    public private(set) var latentFramesEncoded = 0
    /// Whether latents are normalized as the DiT's are ((mu - mean) / std, Wan's `encode`); false gives the raw
    /// means, as StreamDiffusionV2 feeds its DiT (`stream_encode(is_scale=False)`, docs/streamdiffusionv2.md).
    public var normalizes = true

    /// A new stream over `model`'s weights.
    public init(model: WanVAEEncoder) {
        self.model = model
        cache = CausalCache(count: model.slotCount)
    }

    /// Frames received but not yet encoded (waiting for a chunk of 4 to complete).
    public var pendingFrames: Int { pending?.shape[1] ?? 0 }

    /// Forgets the stream: the next frame is frame 0 of a new video.
    public func reset() {
        cache.reset()
        pending = nil
        frameSize = nil
        latentFramesEncoded = 0
    }

    /// Takes the next frames `[N, T, H, W, 3]` in [-1, 1] (H and W multiples of the spatial stride s, 8 or 16,
    /// the same in every call) and returns the latents `[N, k, H/s, W/s, z]` of every chunk they complete, or nil
    /// when they complete none yet.
    public func encode(_ frames: Tensor) throws -> Tensor? {
        let s = model.config.spatialStride, ts = model.config.temporalStride
        try require(frames.rank == 5 && frames.shape[4] == 3 && frames.shape[1] >= 1, "StreamingVAEEncoder.encode",
                    "expected frames [N, T, H, W, 3] with T >= 1, got \(frames.shape)")
        let (n, h, w) = (frames.shape[0], frames.shape[2], frames.shape[3])
        try require(h > 0 && w > 0 && h % s == 0 && w % s == 0, "StreamingVAEEncoder.encode",
                    "frame size \(w)x\(h) is not a multiple of \(s)")
        if let size = frameSize {
            try require(size == (h, w, n), "StreamingVAEEncoder.encode",
                        "frames of \(w)x\(h) (N = \(n)) after \(size.w)x\(size.h) (N = \(size.n)): one stream has one size")
        } else {
            frameSize = (h, w, n)
        }
        let b = model.backend
        // (Frames in another dtype than the weights' would run every conv in that dtype: f32 through a bf16 GPU
        // model takes the im2col path at full resolution, several times slower, docs/perf-notes.md, session 11.)
        let input = frames.dtype == model.dtype ? frames : try b.cast(frames, to: model.dtype)
        var x: Tensor? = try pending.map { try b.concat([$0, input], axis: 1) } ?? input
        var moments: [Tensor] = []
        while let rest = x {
            let need = latentFramesEncoded == 0 ? 1 : ts                          // chunks of 1, 4, 4, ...
            guard rest.shape[1] >= need else { break }
            let chunk = rest.shape[1] == need ? rest : try b.slice(rest, axis: 1, start: 0, length: need)
            moments.append(try model.forward(chunk, cache: &cache))               // [N, 1, H/8, W/8, 2z]
            latentFramesEncoded += 1
            x = rest.shape[1] == need ? nil : try b.slice(rest, axis: 1, start: need, length: rest.shape[1] - need)
        }
        pending = x
        guard !moments.isEmpty else { return nil }
        let all = moments.count == 1 ? moments[0] : try b.concat(moments, axis: 1)
        return normalizes ? try model.latents(fromMoments: all) : try model.means(fromMoments: all)
    }
}
