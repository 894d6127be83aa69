import Foundation
import ReelCore

/// LongLive's self-attention KV cache (attention sink + rolling window) as a ring with no shifting.
///
/// Each layer holds K and V of `sinkFrames + windowFrames` latent frames, `[1, slots * tokensPerFrame,
/// heads, headDim]`, keys already rotated by RoPE. Frame f lives in slot f when f < sinkFrames and in
/// slot `sinkFrames + (f - sinkFrames) mod windowFrames` otherwise. Attention has no mask, so the order
/// of keys does not matter, and this ring is exactly LongLive's shifting buffer: it evicts the oldest
/// window frame and never re-applies RoPE. Positions are absolute and unbounded; memory is fixed.
///
/// With `KVCacheStorage.fp8` each (token, head) row of headDim is stored as FP8 E4M3 codes with a float32
/// scale (`Backend.quantizeRows`): a write quantizes, and `attended` dequantizes the layer's attended rows
/// into one scratch K/V of the model's dtype shared by every layer, right before the attention reads them.
///
/// With `hostCopier` (`--gpu-memory`: the KV cache in host memory) the K/V of layers `hostFrom...` live in host
/// memory (page-locked on CUDA; layers before `hostFrom` keep theirs on the device) and pass through two device
/// scratches of one layer's K/V: `beginLayer` uploads the
/// layer's rows into the next scratch on the copy stream (after the compute stream released that scratch) and
/// the compute stream waits for it; the pass writes and attends in the scratch; `endLayer` writes only the rows
/// the pass wrote back to host memory on the copy stream, after the compute stream's writes. Events order it
/// all; the host never waits.
public final class WanKVCache: @unchecked Sendable {
    public let layers: Int
    public let tokensPerFrame: Int
    public let heads: Int
    public let headDim: Int
    public let sinkFrames: Int
    public let windowFrames: Int
    public let storage: KVCacheStorage
    /// `[layers]` of `[1, slots * tokensPerFrame, heads, headDim]`: the model's dtype, or FP8 codes. From layer
    /// `hostFrom` on, in host memory (views of `host`'s buffers, for reading after a synchronize) with `hostCopier`.
    let keys: [Tensor]
    let values: [Tensor]
    /// FP8 storage: `[layers]` of the rows' float32 scales `[1, slots * tokensPerFrame, heads]`; else empty.
    let keyScales: [Tensor]
    let valueScales: [Tensor]
    /// FP8 storage: one layer's keys and values in the model's dtype, `[1, slots * tokensPerFrame, heads,
    /// headDim]` each, that `attended` dequantizes into (every layer reuses them); nil otherwise.
    let scratch: (keys: Tensor, values: Tensor)?
    /// A cache sharded by heads (a sequence-parallel `WanDiT`): shard r holds heads `r * h ..< (r + 1) * h`
    /// (h = heads / shards) of every layer on rank r's stream, written and read with this cache's plans;
    /// this cache keeps the bookkeeping (`endFrame`) and no tensors of its own. Empty for a one-device cache.
    public let shards: [WanKVCache]
    /// The host-memory cache's buffers and device scratches (nil: the cache is on the device).
    let host: HostResidentKV?
    /// The first layer whose K/V live in host memory (`layers` when none do).
    public let hostFrom: Int
    /// One past the newest frame whose keys were written by a generating (not recomputing) pass
    /// (LongLive `global_end_index / frame_seq_length`).
    public private(set) var endFrame = 0

    /// - Parameters:
    ///   - dtype: the model's dtype: the stored keys and values (`.model`), or the scratch they are read
    ///     into (`.fp8`).
    public init(backend: any Backend, layers: Int, tokensPerFrame: Int, heads: Int, headDim: Int,
                sinkFrames: Int, windowFrames: Int, dtype: DType, storage: KVCacheStorage = .model,
                hostCopier: (any HostToDeviceCopying)? = nil, hostFrom: Int = 0) throws {
        try require(windowFrames > 0 && sinkFrames >= 0 && tokensPerFrame > 0, "WanKVCache",
                    "invalid sizes: sink \(sinkFrames), window \(windowFrames), \(tokensPerFrame) tokens per frame")
        self.layers = layers; self.tokensPerFrame = tokensPerFrame; self.heads = heads; self.headDim = headDim
        self.sinkFrames = sinkFrames; self.windowFrames = windowFrames; self.storage = storage
        shards = []
        let rows = (sinkFrames + windowFrames) * tokensPerFrame
        let shape: Shape = [1, rows, heads, headDim]
        // A layer's parts: keys and values, and with FP8 storage their rows' scales.
        let stored = storage == .fp8 ? DType.fp8e4m3 : dtype
        var parts: [(shape: Shape, dtype: DType)] = [(shape, stored), (shape, stored)]
        if storage == .fp8 { parts += [([1, rows, heads], .f32), ([1, rows, heads], .f32)] }
        let first = hostCopier == nil ? layers : hostFrom
        try require(first >= 0, "WanKVCache", "the first host-memory layer must be 0 or more, got \(hostFrom)")
        let onDevice = try (0..<min(first, layers)).map { _ in try parts.map { try backend.zeros($0.shape, dtype: $0.dtype) } }
        var layerParts = onDevice
        if let hostCopier, first < layers {
            let host = try HostResidentKV(layers: first..<layers, parts: parts, compute: backend, copier: hostCopier)
            self.host = host
            layerParts += host.buffers.map { buffers in
                zip(buffers, parts).map { Tensor(storage: $0, shape: $1.shape, dtype: $1.dtype, backend: hostCopier) }
            }
        } else {
            host = nil
        }
        self.hostFrom = min(first, layers)
        keys = layerParts.map { $0[0] }
        values = layerParts.map { $0[1] }
        keyScales = storage == .fp8 ? layerParts.map { $0[2] } : []
        valueScales = storage == .fp8 ? layerParts.map { $0[3] } : []
        scratch = storage == .fp8 ? (try backend.zeros(shape, dtype: dtype), try backend.zeros(shape, dtype: dtype)) : nil
    }

    /// A cache of `heads` heads sharded over `backends` (one per rank, `heads` divisible by their count).
    public init(shardedOver backends: [any Backend], layers: Int, tokensPerFrame: Int, heads: Int, headDim: Int,
                sinkFrames: Int, windowFrames: Int, dtype: DType, storage: KVCacheStorage = .model) throws {
        try require(!backends.isEmpty && heads % backends.count == 0, "WanKVCache",
                    "\(heads) heads do not split over \(backends.count) ranks")
        shards = try backends.map {
            try WanKVCache(backend: $0, layers: layers, tokensPerFrame: tokensPerFrame, heads: heads / backends.count,
                           headDim: headDim, sinkFrames: sinkFrames, windowFrames: windowFrames, dtype: dtype,
                           storage: storage)
        }
        self.layers = layers; self.tokensPerFrame = tokensPerFrame; self.heads = heads; self.headDim = headDim
        self.sinkFrames = sinkFrames; self.windowFrames = windowFrames; self.storage = storage
        keys = []; values = []; keyScales = []; valueScales = []; scratch = nil; host = nil; hostFrom = layers
    }

    public var slots: Int { sinkFrames + windowFrames }
    /// Device bytes of the cache: its keys and values, and with FP8 storage their scales and the scratch.
    /// In host memory: the two scratches and the layers kept on the device.
    public var byteCount: Int {
        guard shards.isEmpty else { return shards.map(\.byteCount).reduce(0, +) }
        if let host {
            let layerBytes = [keys, values, keyScales, valueScales].reduce(0) { $0 + ($1.first?.byteCount ?? 0) }
            return host.scratches.reduce(0) { $0 + $1.reduce(0) { $0 + $1.byteCount } } + hostFrom * layerBytes
                + (scratch.map { $0.keys.byteCount + $0.values.byteCount } ?? 0)
        }
        let rows = slots * tokensPerFrame * heads
        let scratchBytes = scratch.map { 2 * $0.keys.count * $0.keys.dtype.size } ?? 0
        return 2 * layers * rows * (headDim * (keys.first?.dtype.size ?? 0) + (storage == .fp8 ? 4 : 0)) + scratchBytes
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
    /// FP8 storage quantizes each run's rows and copies their codes and scales.
    public func write(layer: Int, keys k: Tensor, values v: Tensor, plan: WritePlan) throws {
        let (layerKeys, layerValues) = try live(layer)
        let backend = layerKeys.backend
        for run in plan.runs {
            let src = run.input * tokensPerFrame, dst = run.slot * tokensPerFrame, n = run.count * tokensPerFrame
            let kr = try k.narrowed(axis: 1, start: src, length: n), vr = try v.narrowed(axis: 1, start: src, length: n)
            guard storage == .fp8 else {
                try backend.copy(kr, into: layerKeys, axis: 1, at: dst)
                try backend.copy(vr, into: layerValues, axis: 1, at: dst)
                continue
            }
            let (keyScales, valueScales) = try liveScales(layer)
            for (rows, codes, scales) in [(kr, layerKeys, keyScales), (vr, layerValues, valueScales)] {
                let q = try backend.quantizeRows(rows)                                    // [1, n, heads, headDim]
                try backend.copy(q.values, into: codes, axis: 1, at: dst)
                try backend.copy(try q.scales.reshaped([1, n, heads]), into: scales, axis: 1, at: dst)
            }
        }
    }

    /// Where a pass writes all its frames' keys and values when they go to consecutive slots in one
    /// run (every generation pass; not one that wraps around the ring or skips frames): views of the
    /// layer's K and V `[1, frames * tokensPerFrame, heads, headDim]` for the projections to write
    /// into, so that no copy follows. nil: compute them and `write` (always with FP8 storage, which quantizes).
    public func destination(layer: Int, plan: WritePlan) throws -> (Tensor, Tensor)? {
        guard storage == .model else { return nil }
        let runs = plan.runs
        guard runs.count == 1, runs[0].input == 0, runs[0].count == plan.frames else { return nil }
        let start = runs[0].slot * tokensPerFrame, n = plan.frames * tokensPerFrame
        let (k, v) = try live(layer)
        return (try k.narrowed(axis: 1, start: start, length: n), try v.narrowed(axis: 1, start: start, length: n))
    }

    /// The keys and values a pass attends to, `[1, attendedSlots * tokensPerFrame, heads, headDim]` each:
    /// views of the cache, or with FP8 storage the rows dequantized into the scratch, valid until the next
    /// `attended` of any layer (ops on the cache's stream run in order, so the next layer's overwrite
    /// follows this layer's attention).
    public func attended(layer: Int, plan: WritePlan) throws -> (Tensor, Tensor) {
        let n = plan.attendedSlots * tokensPerFrame
        let (layerKeys, layerValues) = try live(layer)
        let (k, v) = (try layerKeys.narrowed(axis: 1, start: 0, length: n),
                      try layerValues.narrowed(axis: 1, start: 0, length: n))
        guard let scratch else { return (k, v) }
        let backend = k.backend
        let out = (try scratch.keys.narrowed(axis: 1, start: 0, length: n),
                   try scratch.values.narrowed(axis: 1, start: 0, length: n))
        let (keyScales, valueScales) = try liveScales(layer)
        for (codes, scales, into) in [(k, keyScales, out.0), (v, valueScales, out.1)] {
            let q = try RowQuantized(values: codes, scales: try scales.narrowed(axis: 1, start: 0, length: n),
                                     sourceType: into.dtype)
            try backend.dequantizeRows(q, into: into)
        }
        return out
    }

    /// Layer `layer`'s K and V where the pass reads and writes them: the cache's own, or in host memory the
    /// scratch `beginLayer` filled.
    func live(_ layer: Int) throws -> (Tensor, Tensor) {
        guard let host, layer >= hostFrom else { return (keys[layer], values[layer]) }
        let parts = try host.live(layer)
        return (parts[0], parts[1])
    }

    /// In host memory: the bytes issued so far to the device scratches and back to host memory (nil on the device).
    public var hostTraffic: (uploaded: Int, writtenBack: Int)? { host.map { ($0.uploaded, $0.writtenBack) } }

    /// FP8 storage: layer `layer`'s key and value scales where the pass reads and writes them (as `live`).
    func liveScales(_ layer: Int) throws -> (Tensor, Tensor) {
        guard let host, layer >= hostFrom else { return (keyScales[layer], valueScales[layer]) }
        let parts = try host.live(layer)
        return (parts[2], parts[3])
    }

    /// Before a pass uses layer `layer` (`WanDiT.forward`): in host memory, its K/V uploaded into a scratch. With
    /// the pass's `plan`, only the rows it reads before writing them: the attended slots less those it writes
    /// (their rows are written before the pass reads them); without, every row.
    public func beginLayer(_ layer: Int, plan: WritePlan? = nil) throws {
        guard let host, layer >= hostFrom else { return }
        try host.begin(layer, rows: plan.map(uploadedRows))
    }

    /// The row ranges (start, count) of the attended slots that `plan` does not write, in order.
    func uploadedRows(_ plan: WritePlan) -> [(start: Int, count: Int)] {
        var out: [(start: Int, count: Int)] = []
        var next = 0
        for run in plan.runs.sorted(by: { $0.slot < $1.slot }) {
            if run.slot > next { out.append((next * tokensPerFrame, (run.slot - next) * tokensPerFrame)) }
            next = max(next, run.slot + run.count)
        }
        if plan.attendedSlots > next { out.append((next * tokensPerFrame, (plan.attendedSlots - next) * tokensPerFrame)) }
        return out
    }

    /// After a pass has issued its work on layer `layer` as `plan` says: in host memory, the rows it wrote go back.
    public func endLayer(_ layer: Int, plan: WritePlan) throws {
        guard let host, layer >= hostFrom else { return }
        let rows = plan.runs.map { (start: $0.slot * tokensPerFrame, count: $0.count * tokensPerFrame) }
        try host.end(layer, rows: rows)
    }

    public func commit(_ plan: WritePlan) {
        if plan.advancesEnd { endFrame = max(endFrame, plan.startFrame + plan.frames) }
    }
}

/// The host-memory part of a `WanKVCache`: each of `layers`' parts (K and V, and with FP8 storage their scales) in
/// host buffers of the copier (page-locked on CUDA), and two device scratches of one layer's parts that those layers
/// take in turn. Every part is `[1, rows, ...]`: rows are written back by their index on axis 1.
final class HostResidentKV: @unchecked Sendable {
    let compute: any Backend
    let copier: any HostToDeviceCopying
    /// The layers held here, in order (`buffers[i]` is layer `layers.lowerBound + i`).
    let layers: Range<Int>
    /// `[layer][part]`.
    let buffers: [[any HostStorage]]
    /// `[scratch][part]`.
    let scratches: [[Tensor]]
    /// Bytes of one row (axis 1) of each part.
    private let rowBytes: [Int]
    /// The compute stream's event after the last layer that used each scratch (the next upload into it waits).
    private var released: [(any BackendEvent)?]
    /// Layers begun so far (layer uses take scratches in turn), and the one in use.
    private var begun = 0
    private var current: (layer: Int, scratch: Int)?
    /// Bytes issued so far: uploaded into the scratches, and written back to host memory.
    private(set) var uploaded = 0, writtenBack = 0

    init(layers: Range<Int>, parts: [(shape: Shape, dtype: DType)], compute: any Backend,
         copier: any HostToDeviceCopying) throws {
        self.layers = layers
        self.compute = compute
        self.copier = copier
        rowBytes = parts.map { $0.shape.count / $0.shape[1] * $0.dtype.size }
        buffers = try layers.map { _ in
            try parts.map { part in
                let bytes = part.shape.count * part.dtype.size
                let buffer = try copier.makeHostBuffer(bytes: bytes)
                memset(buffer.baseAddress, 0, bytes)
                return buffer
            }
        }
        scratches = try (0..<2).map { _ in try parts.map { try compute.allocate($0.shape, dtype: $0.dtype) } }
        released = [nil, nil]
    }

    func live(_ layer: Int) throws -> [Tensor] {
        guard let current, current.layer == layer else {
            throw ReelError.unsupported(backend: compute.name, op: "WanKVCache",
                                        message: "layer \(layer) of a host-memory KV cache used outside beginLayer/endLayer")
        }
        return scratches[current.scratch]
    }

    /// Uploads layer `layer`'s parts (the row ranges `rows` of each, or all of them) into the next scratch on the
    /// copy stream, once the compute stream has released it; the compute stream waits for the upload.
    func begin(_ layer: Int, rows: [(start: Int, count: Int)]? = nil) throws {
        let s = begun % scratches.count
        if let free = released[s] { try copier.wait(for: free) }
        for ((buffer, scratch), bytes) in zip(zip(buffers[layer - layers.lowerBound], scratches[s]), rowBytes) {
            guard let rows else {
                try copier.copy(fromHost: buffer.baseAddress, into: scratch)
                uploaded += scratch.byteCount
                continue
            }
            for (start, count) in rows where count > 0 {
                try copier.copy(fromHost: buffer.baseAddress + start * bytes,
                                into: try scratch.narrowed(axis: 1, start: start, length: count))
                uploaded += count * bytes
            }
        }
        try compute.wait(for: try copier.recordEvent())
        begun += 1
        current = (layer, s)
    }

    /// Copies the rows `rows` (start, count) of every part of the scratch back to layer `layer`'s host buffers on the
    /// copy stream after the compute stream's work so far, and releases the scratch (the copy stream runs the
    /// write-back before any later upload into it).
    func end(_ layer: Int, rows: [(start: Int, count: Int)]) throws {
        guard let current, current.layer == layer else { return }
        let done = try compute.recordEvent()
        if !rows.isEmpty { try copier.wait(for: done) }
        for ((scratch, buffer), bytes) in zip(zip(scratches[current.scratch], buffers[layer - layers.lowerBound]), rowBytes) {
            for (start, count) in rows {
                try copier.copy(try scratch.narrowed(axis: 1, start: start, length: count), toHost: buffer.baseAddress + start * bytes)
                writtenBack += count * bytes
            }
        }
        released[current.scratch] = done
        self.current = nil
    }
}

/// How a `WanKVCache` stores the self-attention's keys and values (`--kv-cache`).
public enum KVCacheStorage: String, Sendable, CaseIterable {
    /// The model's dtype (bf16 on the GPU, float32 in the CPU's parity runs): the reference's cache, exact.
    case model = "bf16"
    /// FP8 E4M3 codes with a float32 scale per (token, head) row of headDim: about half a bf16 cache's memory
    /// (one byte a value, four a row), at the error `LongLiveParityTests` measures. An option, never the default.
    case fp8
}
