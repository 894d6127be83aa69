import ReelCore

/// LongLive 2.0's self-attention KV cache (NVlabs/LongLive main, `wan_5b/modules/causal_model.py`,
/// `CausalWanSelfAttention.forward` and `CausalWanModel._apply_cache_updates`), kept as the reference keeps it:
/// a buffer of `frames` latent frames per layer whose contents shift left when a new block does not fit.
///
/// The buffer is modelled literally, at frame granularity (every reference index is a multiple of a frame's
/// tokens), because with relative RoPE the order of the buffer is the order of the positions:
/// - a pass over frames `[start, start + n)` ending past `globalEnd` that does not fit evicts
///   `n + localEnd - frames` frames after the protected prefix (the effective sink), shifting the rest left;
///   otherwise it writes at `localEnd + end - globalEnd - n` (a later step of the same block rewrites its slots);
/// - the effective sink is `globalSink + pinnedLength` when a pinned shot sink sits right after the global sink,
///   else `globalSink` when one is pinned elsewhere ("floating": it shifts left with the rest and its start
///   follows), else `max(globalSink, sink)`;
/// - the pass attends to the whole buffer up to its new end: LongLive 2.0 sizes the buffer and the attention
///   window from the same `local_attn_size` (`_initialize_kv_cache`, `_set_all_modules_max_attention_size`),
///   so the window never starts past 0 and the reference's prepend-sink branches do not run.
///
/// Keys are stored rotated at their absolute position (`rotatedKeys`, the default inference path), or raw after
/// the q/k norm when RoPE is applied at attention time with window-relative positions (`use_relative_rope`).
public final class LongLive2KVCache: @unchecked Sendable {
    public let layers: Int
    public let tokensPerFrame: Int
    public let heads: Int
    public let headDim: Int
    /// Buffer length in latent frames (LongLive `local_attn_size`: 32).
    public let frames: Int
    /// Frames kept at the front when nothing is pinned (`sink_size`: 8).
    public let sinkFrames: Int
    /// Frames permanently anchored at the front (`global_sink_size`: the sink size with `multi_shot_sink`, else 0).
    public let globalSinkFrames: Int
    let keys: [Tensor]
    let values: [Tensor]
    /// One past the newest frame written (`global_end_index / frame_seq_length`).
    public private(set) var globalEnd = 0
    /// One past the buffer's newest frame (`local_end_index / frame_seq_length`).
    public private(set) var localEnd = 0
    /// The pinned shot sink: buffer start and length in frames (`pinned_start`, `pinned_len`); nil when none.
    public private(set) var pinned: (start: Int, length: Int)?

    public init(backend: any Backend, layers: Int, tokensPerFrame: Int, heads: Int, headDim: Int, frames: Int,
                sinkFrames: Int, globalSinkFrames: Int, dtype: DType) throws {
        try require(frames > 0 && sinkFrames >= 0 && globalSinkFrames >= 0 && max(sinkFrames, globalSinkFrames) < frames
                    && tokensPerFrame > 0, "LongLive2KVCache",
                    "invalid sizes: \(frames) frames, sink \(sinkFrames), global sink \(globalSinkFrames)")
        self.layers = layers; self.tokensPerFrame = tokensPerFrame; self.heads = heads; self.headDim = headDim
        self.frames = frames; self.sinkFrames = sinkFrames; self.globalSinkFrames = globalSinkFrames
        let shape: Shape = [1, frames * tokensPerFrame, heads, headDim]
        keys = try (0..<layers).map { _ in try backend.zeros(shape, dtype: dtype) }
        values = try (0..<layers).map { _ in try backend.zeros(shape, dtype: dtype) }
    }

    public var byteCount: Int { 2 * layers * frames * tokensPerFrame * heads * headDim * (keys.first?.dtype.size ?? 0) }

    /// What one pass does to the buffer (the same for every layer).
    public struct Plan: Sendable, Equatable {
        public var startFrame: Int
        public var newFrames: Int
        /// Frames kept in place at the front when rolling.
        public var protectedFrames: Int
        /// Frames dropped after the protected prefix (0: no roll).
        public var evicted: Int
        /// Frames shifted left by `evicted`.
        public var rolled: Int
        /// Buffer slots `[writeStart, writeStart + newFrames)` receive the pass's frames.
        public var writeStart: Int
        /// The pass attends to buffer frames `0 ..< attended` (its own included).
        public var attended: Int
        /// How far the pinned sink's start moves left.
        public var pinnedShift: Int
    }

    /// The reference's index arithmetic for a pass over `newFrames` frames from absolute frame `startFrame`.
    public func plan(startFrame: Int, newFrames n: Int) throws -> Plan {
        let end = startFrame + n
        let pinnedAfterSink = pinned.map { $0.start == globalSinkFrames } ?? false
        let protected = pinned.map { pinnedAfterSink ? globalSinkFrames + $0.length : globalSinkFrames }
            ?? max(globalSinkFrames, sinkFrames)
        var plan = Plan(startFrame: startFrame, newFrames: n, protectedFrames: protected, evicted: 0, rolled: 0,
                        writeStart: 0, attended: 0, pinnedShift: 0)
        if end > globalEnd && n + localEnd > frames {
            plan.evicted = n + localEnd - frames
            plan.rolled = localEnd - plan.evicted - protected
            plan.attended = localEnd + end - globalEnd - plan.evicted
            if let p = pinned, p.start >= protected { plan.pinnedShift = plan.evicted }
        } else {
            plan.attended = localEnd + end - globalEnd
        }
        plan.writeStart = plan.attended - n
        try require(plan.rolled >= 0 && plan.writeStart >= 0 && plan.attended <= frames, "LongLive2KVCache.plan",
                    "a pass over frames \(startFrame)..<\(end) does not fit a buffer of \(frames) frames "
                    + "(end \(localEnd), global end \(globalEnd), \(protected) protected)")
        return plan
    }

    /// Applies `plan` to one layer (shift, then write `keys`/`values` `[1, newFrames * tokensPerFrame, heads,
    /// headDim]`) and returns the attended keys and values (views of the buffer, no copy).
    public func update(layer: Int, plan: Plan, keys k: Tensor, values v: Tensor) throws -> (Tensor, Tensor) {
        let be = keys[layer].backend, t = tokensPerFrame
        // Left shift by `evicted` frames, in pieces of at most `evicted` frames in increasing order: a piece
        // never overlaps its source, and every source is read before a later piece overwrites it.
        var moved = 0
        while moved < plan.rolled {
            let count = min(plan.evicted, plan.rolled - moved)
            let dst = (plan.protectedFrames + moved) * t, src = dst + plan.evicted * t
            for buffer in [keys[layer], values[layer]] {
                try be.copy(try buffer.narrowed(axis: 1, start: src, length: count * t), into: buffer, axis: 1, at: dst)
            }
            moved += count
        }
        let dtype = keys[layer].dtype
        try be.copy(k.dtype == dtype ? k : try be.cast(k, to: dtype), into: keys[layer], axis: 1, at: plan.writeStart * t)
        try be.copy(v.dtype == dtype ? v : try be.cast(v, to: dtype), into: values[layer], axis: 1, at: plan.writeStart * t)
        let n = plan.attended * t
        return (try keys[layer].narrowed(axis: 1, start: 0, length: n),
                try values[layer].narrowed(axis: 1, start: 0, length: n))
    }

    /// Records the pass (`_apply_cache_updates`: global end, local end, and the pinned start's shift).
    public func commit(_ plan: Plan) {
        globalEnd = plan.startFrame + plan.newFrames
        localEnd = plan.attended
        if let p = pinned, plan.pinnedShift > 0 { pinned = (p.start - plan.pinnedShift, p.length) }
    }

    /// Forgets everything after the global sink and any pinned sink, as if frame `nextFrame` came right after the
    /// global sink (`_zero_kv_data`: local end at the global sink, global end at `nextFrame`, nothing pinned). The
    /// buffer's contents stay; the next pass overwrites the slots it reads.
    public func keepOnlyGlobalSink(nextFrame: Int) {
        localEnd = globalSinkFrames
        globalEnd = nextFrame
        pinned = nil
    }

    /// Pins the newest `blockFrames` frames as the shot's sink, at most `sinkFrames` of them
    /// (`CausalDiffusionInferencePipeline._pin_current_chunk`, after a scene cut's clean pass).
    public func pinNewest(blockFrames: Int) {
        pinned = (localEnd - blockFrames, min(sinkFrames, blockFrames))
    }
}
