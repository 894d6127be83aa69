import ReelCore

/// Encodes a stream of video frames with the TAEHV tiny encoder, any number of frames per call, for
/// live video-to-video. Every 4 frames give one latent: latent j comes from frames 4j..4j+3 and,
/// through the MemBlocks, everything before them. Frames that do not complete a group wait (inside
/// the TPools) for the next call. Between calls it keeps at most one frame per TPool and one per
/// MemBlock, so memory is flat over long streams. The latents equal taehv's `encode_video` of the
/// same frames, whatever the call sizes.
///
/// First frame: taehv has no rule for it. Unlike the Wan VAE encoder (`StreamingVAEEncoder`: frame 0
/// alone gives latent 0, 1 + 4k frames give 1 + k latents), 4k frames give k latents here. Reel's
/// decoders follow Wan's count (latent 0 -> 1 frame, `StreamingTinyDecoder` trims taehv's first 3),
/// so 4k frames encoded here decode to 4k - 3. The end: `flush()` repeats the last frame up to a
/// whole group, as `encode_video` and `StreamingTAEHV.flush_encoder` do.
public final class StreamingTinyEncoder {
    public let model: TinyEncoder
    private var state: TinyEncoder.State
    /// The last frame received, in [0, 1] `[N, 1, H, W, 3]`: what `flush()` repeats.
    private var lastFrame: Tensor?
    private var frameSize: (h: Int, w: Int, n: Int)?
    /// Frames received since the stream started.
    public private(set) var framesEncoded = 0

    /// A new stream over `model`'s weights (several streams may share one model).
    public init(model: TinyEncoder) {
        self.model = model
        state = model.initialState()
    }

    public var latentChannels: Int { model.latentChannels }
    public var spatialStride: Int { model.spatialStride }
    /// Frames received but not yet part of a latent (fewer than 4).
    public var pendingFrames: Int { framesEncoded % model.framesPerLatent }
    /// Latent frames produced since the stream started.
    public var latentFramesEncoded: Int { framesEncoded / model.framesPerLatent }

    /// Forgets the stream: the next frame is frame 0 of a new video.
    public func reset() {
        state = model.initialState()
        lastFrame = nil
        frameSize = nil
        framesEncoded = 0
    }

    /// Takes the next frames `[N, T, H, W, 3]` in [-1, 1] (H and W multiples of 8, the same in every call)
    /// and returns the latents `[N, k, H/8, W/8, z]` of every group of 4 frames they complete, or nil when
    /// they complete none yet.
    public func encode(_ frames: Tensor) throws -> Tensor? {
        let op = "StreamingTinyEncoder.encode", s = spatialStride
        try require(frames.rank == 5 && frames.shape[4] == 3 && frames.shape[1] >= 1, op,
                    "expected frames [N, T, H, W, 3] with T >= 1, got \(frames.shape)")
        let (n, t, h, w) = (frames.shape[0], frames.shape[1], frames.shape[2], frames.shape[3])
        try require(n > 0 && h > 0 && w > 0 && h % s == 0 && w % s == 0, op,
                    "frame size \(w)x\(h) is not a multiple of \(s)")
        if let size = frameSize {
            try require(size == (h, w, n), op,
                        "frames of \(w)x\(h) (N = \(n)) after \(size.w)x\(size.h) (N = \(size.n)): "
                            + "one stream has one size")
        } else {
            frameSize = (h, w, n)
        }
        let b = frames.backend
        // (Frames in another dtype than the weights' would run every conv in that dtype: f32 on a bf16 GPU
        // model takes the im2col path on CUDA; the bf16 fix doubled end-to-end video-to-video with TAEHV on an H100,
        // 52.9 -> 104.5 FPS at 2 steps, docs/perf-notes.md, sessions 10 and 11.)
        let input = frames.dtype == model.dtype ? frames : try b.cast(frames, to: model.dtype)
        let x = try b.affine(input, scale: 0.5, bias: 0.5)                        // [-1, 1] -> taehv's [0, 1]
        lastFrame = try b.slice(x, axis: 1, start: t - 1, length: 1)
        framesEncoded += t
        return try model.forward(x, state: &state)
    }

    /// Ends the stream's pending group: repeats the last frame until it is whole and returns its latent
    /// `[N, 1, h, w, z]`, or nil when no frames are pending. The stream may go on afterwards.
    public func flush() throws -> Tensor? {
        guard let last = lastFrame, pendingFrames > 0 else { return nil }
        let b = last.backend
        let missing = model.framesPerLatent - pendingFrames
        let padding = missing == 1 ? last : try b.concat(Array(repeating: last, count: missing), axis: 1)
        framesEncoded += missing
        return try model.forward(padding, state: &state)
    }

    /// Elements the stream keeps between calls (tests: flat memory).
    var stateElementCount: Int {
        (state.pooling + state.memory + [lastFrame]).reduce(0) { $0 + ($1?.count ?? 0) }
    }
}
