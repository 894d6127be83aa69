import ReelCore

/// LongLive's self-attention KV cache (attention sink + rolling window) as a ring with no shifting.
///
/// Each layer holds K and V of `sinkFrames + windowFrames` latent frames, `[1, slots * tokensPerFrame,
/// heads, headDim]`, keys already rotated by RoPE. Frame f lives in slot f when f < sinkFrames and in
/// slot `sinkFrames + (f - sinkFrames) mod windowFrames` otherwise. Attention has no mask, so the order
/// of keys does not matter, and this ring is exactly LongLive's shifting buffer: it evicts the oldest
/// window frame and never re-applies RoPE. Positions are absolute and unbounded; memory is fixed.
public final class WanKVCache: @unchecked Sendable {
    public let layers: Int
    public let tokensPerFrame: Int
    public let heads: Int
    public let headDim: Int
    public let sinkFrames: Int
    public let windowFrames: Int
    let keys: [Tensor]
    let values: [Tensor]
    /// One past the newest frame whose keys were written by a generating (not recomputing) pass
    /// (LongLive `global_end_index / frame_seq_length`).
    public private(set) var endFrame = 0

    public init(backend: any Backend, layers: Int, tokensPerFrame: Int, heads: Int, headDim: Int,
                sinkFrames: Int, windowFrames: Int, dtype: DType) throws {
        try require(windowFrames > 0 && sinkFrames >= 0 && tokensPerFrame > 0, "WanKVCache",
                    "invalid sizes: sink \(sinkFrames), window \(windowFrames), \(tokensPerFrame) tokens per frame")
        self.layers = layers; self.tokensPerFrame = tokensPerFrame; self.heads = heads; self.headDim = headDim
        self.sinkFrames = sinkFrames; self.windowFrames = windowFrames
        let shape: Shape = [1, (sinkFrames + windowFrames) * tokensPerFrame, heads, headDim]
        keys = try (0..<layers).map { _ in try backend.zeros(shape, dtype: dtype) }
        values = try (0..<layers).map { _ in try backend.zeros(shape, dtype: dtype) }
    }

    public var slots: Int { sinkFrames + windowFrames }
    public var byteCount: Int { 2 * layers * slots * tokensPerFrame * heads * headDim * (keys.first?.dtype.size ?? 0) }

    public func slot(ofFrame f: Int) -> Int { f < sinkFrames ? f : sinkFrames + (f - sinkFrames) % windowFrames }

    /// Which input frames a pass writes, and how many slots it attends to.
    public struct WritePlan: Sendable, Equatable {
        public var startFrame: Int
        public var frames: Int
        /// (input frame index, slot) pairs.
        public var writes: [Writes]
        /// Slots `0 ..< attendedSlots` hold the keys this pass attends to.
        public var attendedSlots: Int
        public var advancesEnd: Bool

        public struct Writes: Sendable, Equatable { public var input: Int; public var slot: Int }
    }

    /// LongLive's rules: a pass over frames that were already generated (`end <= endFrame`, start > 0) is
    /// a recompute and never writes the sink; frames older than the window are not written; the pass
    /// attends to the sink plus the window ending at max(end, endFrame).
    public func plan(startFrame: Int, frames: Int) -> WritePlan {
        let end = startFrame + frames
        let recompute = end <= endFrame && startFrame > 0
        let horizon = max(end, endFrame)
        var writes: [WritePlan.Writes] = []
        for f in startFrame..<end {
            let writable = f < sinkFrames ? !recompute : f >= horizon - windowFrames
            if writable { writes.append(.init(input: f - startFrame, slot: slot(ofFrame: f))) }
        }
        return WritePlan(startFrame: startFrame, frames: frames, writes: writes,
                         attendedSlots: min(horizon, slots), advancesEnd: !recompute)
    }

    /// Writes one layer's keys and values `[1, frames * tokensPerFrame, heads, headDim]` as planned.
    public func write(layer: Int, keys k: Tensor, values v: Tensor, plan: WritePlan) throws {
        let backend = keys[layer].backend
        for w in plan.writes {
            let src = w.input * tokensPerFrame, dst = w.slot * tokensPerFrame
            try backend.copy(try k.narrowed(axis: 1, start: src, length: tokensPerFrame), into: keys[layer], axis: 1, at: dst)
            try backend.copy(try v.narrowed(axis: 1, start: src, length: tokensPerFrame), into: values[layer], axis: 1, at: dst)
        }
    }

    /// The keys and values a pass attends to (views, no copy).
    public func attended(layer: Int, plan: WritePlan) throws -> (Tensor, Tensor) {
        let n = plan.attendedSlots * tokensPerFrame
        return (try keys[layer].narrowed(axis: 1, start: 0, length: n),
                try values[layer].narrowed(axis: 1, start: 0, length: n))
    }

    public func commit(_ plan: WritePlan) {
        if plan.advancesEnd { endFrame = max(endFrame, plan.startFrame + plan.frames) }
    }
}
