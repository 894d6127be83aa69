import ReelCore

// What a pipeline of whole-model replicas (one per device, each with its own cache) needs beyond one model:
// a prompt's context on another replica's device, and a cache's sink rewritten from another cache.

extension WanDiT.PromptContext {
    /// The same context on `stream` (its cross-attention keys and values copied there, ordered after the work
    /// that made them): how a prompt encoded once reaches a replica of the model on another device. Bytes are
    /// copied, so the context is exactly the original. A context of a model spread over devices is refused.
    public func handedOver(to stream: any Backend) throws -> WanDiT.PromptContext {
        try require(ranks.isEmpty, "PromptContext.handedOver", "the context of a model spread over devices stays on its ranks")
        guard let first = crossKV.first, first.keys.backend !== stream else { return self }
        let ready = try first.keys.backend.recordEvent()
        let moved = try crossKV.map {
            WanDiT.KeysValues(keys: try $0.keys.handedOver(to: stream, ready: ready),
                              values: try $0.values.handedOver(to: stream, ready: ready))
        }
        return WanDiT.PromptContext(crossKV: moved, startsShot: startsShot)
    }
}

extension WanKVCache {
    /// Copies the sink's keys and values (slots `0 ..< sinkFrames`, every layer) from `other`, a cache of the
    /// same shape on the same stream: LiveAvatar's sink, computed apart at timestep 0 and put into each
    /// pipeline stage's cache (`causal_s2v_pipeline_tpp.py`, the `sink_flag` prefill of `cond_k`/`cond_v`).
    public func copySink(from other: WanKVCache) throws {
        try require(shards.isEmpty && other.shards.isEmpty, "WanKVCache.copySink", "a sharded cache's sink is not copied")
        try require(other.layers == layers && other.tokensPerFrame == tokensPerFrame && other.heads == heads
                    && other.headDim == headDim && other.sinkFrames == sinkFrames && other.storage == storage,
                    "WanKVCache.copySink", "the caches differ in shape")
        try require(host == nil && other.host == nil, "WanKVCache.copySink", "a cache in host memory's sink is not copied")
        let rows = sinkFrames * tokensPerFrame
        guard rows > 0 else { return }
        let backend = keys[0].backend
        let pairs = [(other.keys, keys), (other.values, values), (other.keyScales, keyScales),
                     (other.valueScales, valueScales)]
        for (from, into) in pairs {
            for (src, dst) in zip(from, into) {
                try backend.copy(try src.narrowed(axis: 1, start: 0, length: rows), into: dst, axis: 1, at: 0)
            }
        }
    }
}
