import ReelCore

/// StreamDiffusionV2's self-attention KV cache: one cache row per denoising level, a sink whose frames are
/// replaced when new content stops resembling them, and an eviction queue per layer and row
/// (chenfengxu714/StreamDiffusionV2 `models/wan/causal_model.py:268-342`, `CausalWanSelfAttention.forward`).
///
/// Each layer and row holds `slots` latent frames of keys (after norm and RoPE) and values,
/// `[1, slots * tokensPerFrame, heads, headDim]`; slots `0 ..< sinkFrames` are the sink. Positions are in
/// latent frames here (the reference counts tokens; every position it uses is a multiple of a frame).
///
/// Per layer and row the cache keeps what the reference keeps per layer (`evict_idx`, one queue per row,
/// of slot *end* positions) and per layer dict (`global_end_index`, `local_end_index` per row, and the
/// `current_step` counter that only matters with one row). A pass over `n` frames at `startFrame`:
///
/// 1. with a threshold, `n == 1` and a sink: the cosine similarity of the token-mean of the new keys with
///    that of each sink slot's cached keys, averaged with the same for values; when the least similar is
///    below the threshold, that slot's end goes to the front of the queue (`:284-299`);
/// 2. a full cache (`end > slots` or `localEnd >= slots`) writes at the queue's head and rotates it: a
///    window entry goes to the back, a sink entry leaves; with one row the head stays for `totalSteps - 1`
///    passes, so a block's steps all write one slot (`:302-322`);
/// 3. a filling cache writes after what it holds and queues the next window slot's end (`:326-337`);
/// 4. the pass attends to slots `0 ..< localEnd` of its row.
///
/// The token-means of the sink slots are kept on the host as they are written, so a check downloads only
/// the new frame's two means (`dim` values each, in one download), not the sink.
public final class SinkRefreshKVCache: @unchecked Sendable {
    public let layers: Int
    /// Rows allocated: one per denoising level of the stream batch.
    public let rows: Int
    public let tokensPerFrame: Int
    public let heads: Int
    public let headDim: Int
    /// Frames per row, sink included (StreamDiffusionV2 `num_kv_cache`: 6).
    public let slots: Int
    /// Sink frames at the start of each row (`num_sink_tokens`: 3).
    public let sinkFrames: Int
    /// Sink refresh threshold on the averaged similarity (`adapt_sink_threshold`: 0.2); nil: no refresh
    /// (the reference's -1).
    public let threshold: Float?
    /// Passes per block with one row: a block's steps keep writing the queue's head until the last
    /// (`total_steps`).
    public let totalSteps: Int
    /// Rows in use: 1 until `replicateFirstRow()` (the reference's cache batch, `cache_bs`).
    public private(set) var activeRows = 1

    let keys: [[Tensor]]
    let values: [[Tensor]]
    private var state: [[RowState]]
    private var currentStep: [Int]
    private var ones: Tensor?

    /// A sink refresh decided by a pass: the slot queued and the averaged similarity that fell below the
    /// threshold.
    public struct Refresh: Sendable, Equatable {
        public var layer: Int
        public var row: Int
        public var slot: Int
        public var similarity: Float
    }
    /// Every refresh since `takeRefreshes()` last emptied it.
    public private(set) var refreshes: [Refresh] = []

    struct RowState {
        var globalEnd = 0
        var localEnd = 0
        /// Slot end positions (frames), the next write target first.
        var queue: [Int] = []
        /// Token-means of each sink slot's keys and values, as last written (zero while unwritten).
        var sinkKeyMeans: [[Double]]
        var sinkValueMeans: [[Double]]
    }

    public init(backend: any Backend, layers: Int, rows: Int, tokensPerFrame: Int, heads: Int, headDim: Int,
                slots: Int, sinkFrames: Int, threshold: Float?, totalSteps: Int, dtype: DType) throws {
        try require(layers > 0 && rows > 0 && tokensPerFrame > 0 && heads > 0 && headDim > 0, "SinkRefreshKVCache",
                    "invalid sizes: \(layers) layers, \(rows) rows, \(tokensPerFrame) tokens per frame")
        try require(sinkFrames >= 0 && slots > sinkFrames, "SinkRefreshKVCache",
                    "\(slots) frames must exceed the \(sinkFrames) sink frames")
        try require(totalSteps > 0, "SinkRefreshKVCache", "steps per block must be positive, got \(totalSteps)")
        self.layers = layers; self.rows = rows; self.tokensPerFrame = tokensPerFrame
        self.heads = heads; self.headDim = headDim; self.slots = slots; self.sinkFrames = sinkFrames
        self.threshold = threshold; self.totalSteps = totalSteps
        let shape: Shape = [1, slots * tokensPerFrame, heads, headDim]
        keys = try (0..<layers).map { _ in try (0..<rows).map { _ in try backend.zeros(shape, dtype: dtype) } }
        values = try (0..<layers).map { _ in try (0..<rows).map { _ in try backend.zeros(shape, dtype: dtype) } }
        let zero = [[Double]](repeating: [Double](repeating: 0, count: heads * headDim), count: sinkFrames)
        state = Array(repeating: Array(repeating: RowState(sinkKeyMeans: zero, sinkValueMeans: zero), count: rows),
                      count: layers)
        currentStep = Array(repeating: totalSteps, count: layers)
    }

    public var byteCount: Int {
        2 * layers * rows * slots * tokensPerFrame * heads * headDim * (keys.first?.first?.dtype.size ?? 0)
    }

    /// Every row becomes a copy of row 0 (keys, values, positions, queues): the reference's `repeat` of the
    /// cache to the stream batch after the first block (`causal_stream_inference.py:221-225`; the queues
    /// are copied at the next pass, `causal_model.py:273-277`).
    public func replicateFirstRow() throws {
        for l in 0..<layers {
            for r in 1..<max(rows, 1) {
                let be = keys[l][r].backend
                try be.copy(keys[l][0], into: keys[l][r], axis: 1, at: 0)
                try be.copy(values[l][0], into: values[l][r], axis: 1, at: 0)
                state[l][r] = state[l][0]
            }
        }
        activeRows = rows
    }

    /// The eviction queue of `layer`'s row `row`: slot end positions in frames, the next target first.
    public func evictionQueue(layer: Int, row: Int) -> [Int] { state[layer][row].queue }

    /// The refreshes decided since the last call, in the order they were decided.
    public func takeRefreshes() -> [Refresh] {
        defer { refreshes = [] }
        return refreshes
    }

    /// Stores the keys (normed and rotated) and values `[1, n * tokensPerFrame, heads, headDim]` of `n` new
    /// frames at `startFrame` into `row` of `layer` as the reference does, and returns the keys and values
    /// that row attends to (views of its first `localEnd` frames).
    public func store(layer: Int, row: Int, startFrame: Int, keys k: Tensor,
                      values v: Tensor) throws -> (keys: Tensor, values: Tensor) {
        let perFrame = tokensPerFrame
        try require(layer >= 0 && layer < layers && row >= 0 && row < activeRows, "SinkRefreshKVCache.store",
                    "layer \(layer), row \(row) outside \(layers) layers, \(activeRows) rows in use")
        try require(k.rank == 4 && k.shape[1] % perFrame == 0 && k.shape[2] == heads && k.shape[3] == headDim
                    && v.shape == k.shape, "SinkRefreshKVCache.store",
                    "keys \(k.shape) and values \(v.shape) must be [1, frames * \(perFrame), \(heads), \(headDim)]")
        let n = k.shape[1] / perFrame
        var s = state[layer][row]
        let refresh = threshold != nil && sinkFrames > 0
        var means: [Int: (k: [Double], v: [Double])] = [:]
        func frameMeans(_ f: Int) throws -> (k: [Double], v: [Double]) {
            if let m = means[f] { return m }
            let m = try tokenMeans(k, v, frame: f)
            means[f] = m
            return m
        }

        // 1. Sink similarity, before anything is written (causal_model.py:284-299).
        if let threshold, refresh, n == 1 {
            let (km, vm) = try frameMeans(0)
            var sims: [Float] = []
            for j in 0..<sinkFrames {
                // float32 in the reference: each cosine, then their mean.
                let kc = Float(Self.cosine(s.sinkKeyMeans[j], km)), vc = Float(Self.cosine(s.sinkValueMeans[j], vm))
                sims.append((kc + vc) / 2)
            }
            let (slot, low) = sims.enumerated().min { $0.element < $1.element }.map { ($0.offset, $0.element) }!
            if low < threshold {
                s.queue.insert(slot + 1, at: 0)
                refreshes.append(Refresh(layer: layer, row: row, slot: slot, similarity: low))
            }
        }

        // 2./3. Where the frames go.
        let end = startFrame + n
        let writeStart: Int
        if end > slots || s.localEnd >= slots {
            guard let target = s.queue.first else {
                throw ReelError.invalidArgument(op: "SinkRefreshKVCache.store",
                                                message: "the cache is full and no slot is queued for eviction")
            }
            if activeRows == 1 && currentStep[layer] > 1 {
                currentStep[layer] -= 1
            } else {
                let e = s.queue.removeFirst()
                if e > sinkFrames { s.queue.append(e) }
                currentStep[layer] = totalSteps
            }
            writeStart = target - n
            s.localEnd = slots
        } else {
            s.localEnd += end - s.globalEnd
            let rolling = end + n
            if rolling > sinkFrames && rolling <= slots && s.queue.last != rolling { s.queue.append(rolling) }
            writeStart = s.localEnd - n
        }
        s.globalEnd = end
        try require(writeStart >= 0 && writeStart + n <= slots && s.localEnd <= slots, "SinkRefreshKVCache.store",
                    "frames \(startFrame)..<\(end) would be written to slots \(writeStart)..<\(writeStart + n) of \(slots)")

        let be = keys[layer][row].backend
        try be.copy(k, into: keys[layer][row], axis: 1, at: writeStart * perFrame)
        try be.copy(v, into: values[layer][row], axis: 1, at: writeStart * perFrame)
        if refresh {
            for f in 0..<n where writeStart + f < sinkFrames {
                let m = try frameMeans(f)
                s.sinkKeyMeans[writeStart + f] = m.k
                s.sinkValueMeans[writeStart + f] = m.v
            }
        }
        state[layer][row] = s
        let attended = s.localEnd * perFrame
        return (try keys[layer][row].narrowed(axis: 1, start: 0, length: attended),
                try values[layer][row].narrowed(axis: 1, start: 0, length: attended))
    }

    /// The means over frame `f`'s tokens of the keys and of the values `[1, n * tokensPerFrame, heads, headDim]`,
    /// heads and head dim flattened (`dim` values each): a GEMM each with a row of ones on the device, both
    /// downloaded at once (one host wait instead of two).
    private func tokenMeans(_ k: Tensor, _ v: Tensor, frame f: Int) throws -> (k: [Double], v: [Double]) {
        let be = k.backend, dim = heads * headDim
        if ones == nil || ones?.dtype != k.dtype || ones?.backend !== be {
            ones = try be.tensor([Float](repeating: 1, count: tokensPerFrame), shape: [1, tokensPerFrame], dtype: k.dtype)
        }
        let sums = try [k, v].map { x in
            let rows = try x.narrowed(axis: 1, start: f * tokensPerFrame, length: tokensPerFrame)
                .reshaped([tokensPerFrame, dim])
            return try be.matmul(ones!, rows, transposeB: false, bias: nil)       // [1, dim]
        }
        let both = try be.cast(try be.concat(sums, axis: 1), to: .f32).toFloats().map { Double($0) / Double(tokensPerFrame) }
        return (Array(both[..<dim]), Array(both[dim...]))
    }

    /// torch.cosine_similarity: x.y / max(|x| |y|, 1e-8); 0 against a zero vector.
    static func cosine(_ a: [Double], _ b: [Double]) -> Double {
        var dot = 0.0, na = 0.0, nb = 0.0
        for i in a.indices { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i] }
        return dot / max((na * nb).squareRoot(), 1e-8)
    }
}
