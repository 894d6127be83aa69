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
    /// A cache sharded by heads (a sequence-parallel `WanDiT`): shard r holds heads `r * h ..< (r + 1) * h`
    /// (h = heads / shards) of every layer on rank r's stream, written and read with this cache's plans;
    /// this cache keeps the bookkeeping (`endFrame`) and no tensors of its own. Empty for a one-device cache.
    public let shards: [WanKVCache]
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
        shards = []
    }

    /// A cache of `heads` heads sharded over `backends` (one per rank, `heads` divisible by their count).
    public init(shardedOver backends: [any Backend], layers: Int, tokensPerFrame: Int, heads: Int, headDim: Int,
                sinkFrames: Int, windowFrames: Int, dtype: DType) throws {
        try require(!backends.isEmpty && heads % backends.count == 0, "WanKVCache",
                    "\(heads) heads do not split over \(backends.count) ranks")
        shards = try backends.map {
            try WanKVCache(backend: $0, layers: layers, tokensPerFrame: tokensPerFrame, heads: heads / backends.count,
                           headDim: headDim, sinkFrames: sinkFrames, windowFrames: windowFrames, dtype: dtype)
        }
        self.layers = layers; self.tokensPerFrame = tokensPerFrame; self.heads = heads; self.headDim = headDim
        self.sinkFrames = sinkFrames; self.windowFrames = windowFrames
        keys = []
        values = []
    }

    public var slots: Int { sinkFrames + windowFrames }
    public var byteCount: Int {
        shards.isEmpty ? 2 * layers * slots * tokensPerFrame * heads * headDim * (keys.first?.dtype.size ?? 0)
            : shards.map(\.byteCount).reduce(0, +)
    }

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

        /// `count` consecutive input frames from `input` into as many consecutive slots from `slot`.
        public struct Run: Sendable, Equatable { public var input: Int; public var slot: Int; public var count: Int }

        /// The writes merged into runs of consecutive frames and slots, in order: one copy each. A run
        /// ends where the window wraps around the ring or where the sink ends.
        public var runs: [Run] {
            var out: [Run] = []
            for w in writes {
                if let last = out.last, w.input == last.input + last.count, w.slot == last.slot + last.count {
                    out[out.count - 1].count += 1
                } else {
                    out.append(Run(input: w.input, slot: w.slot, count: 1))
                }
            }
            return out
        }

        /// The part of the plan for input frames `inputs`, as the plan of a pass over those frames alone
        /// (a chunk of a longer pass).
        public func restricted(toInputs inputs: Range<Int>) -> WritePlan {
            WritePlan(startFrame: startFrame + inputs.lowerBound, frames: inputs.count,
                      writes: writes.filter { inputs.contains($0.input) }
                          .map { Writes(input: $0.input - inputs.lowerBound, slot: $0.slot) },
                      attendedSlots: attendedSlots, advancesEnd: advancesEnd)
        }
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

    /// Writes one layer's keys and values `[1, frames * tokensPerFrame, heads, headDim]` as planned:
    /// one copy each per run of consecutive frames and slots.
    public func write(layer: Int, keys k: Tensor, values v: Tensor, plan: WritePlan) throws {
        let backend = keys[layer].backend
        for run in plan.runs {
            let src = run.input * tokensPerFrame, dst = run.slot * tokensPerFrame, n = run.count * tokensPerFrame
            try backend.copy(try k.narrowed(axis: 1, start: src, length: n), into: keys[layer], axis: 1, at: dst)
            try backend.copy(try v.narrowed(axis: 1, start: src, length: n), into: values[layer], axis: 1, at: dst)
        }
    }

    /// Where a pass writes all its frames' keys and values when they go to consecutive slots in one
    /// run (every generation pass; not one that wraps around the ring or skips frames): views of the
    /// layer's K and V `[1, frames * tokensPerFrame, heads, headDim]` for the projections to write
    /// into, so that no copy follows. nil: compute them and `write`.
    public func destination(layer: Int, plan: WritePlan) throws -> (Tensor, Tensor)? {
        let runs = plan.runs
        guard runs.count == 1, runs[0].input == 0, runs[0].count == plan.frames else { return nil }
        let start = runs[0].slot * tokensPerFrame, n = plan.frames * tokensPerFrame
        return (try keys[layer].narrowed(axis: 1, start: start, length: n), try values[layer].narrowed(axis: 1, start: start, length: n))
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
