import Foundation
import ReelCore
import ReelIO

/// Weight streaming (`--gpu-memory`, `ResidencyPlan`): the DiT's last blocks live in host memory (page-locked on
/// CUDA) and pass through a ring of `slots` device buffers, one upload per block per pass.
///
/// Ordering, all by events and never a host wait:
/// - the upload of the u-th streamed block goes into slot u % slots on the copy stream, after that stream waits for
///   the compute stream's event recorded when the block that last used the slot (u - slots) was done;
/// - block u's compute waits on its upload's event;
/// - when block u is taken, the upload of block u + slots - 1 is issued, so uploads run ahead of compute, across
///   passes too (the first blocks of the next pass upload while the resident blocks and the head compute).
/// The CPU runs the same code with host "slots" and memcpy uploads, so tests check the result bit for bit.
extension WanDiT {
    /// The same model with blocks `first...` streamed from host memory through `slots` device slots (2 or 3),
    /// uploaded on `copyStream` (default: a new stream of the model's device). The blocks' device tensors are
    /// copied to host memory now; they are freed when the caller drops this model's source. One device.
    public func streamingBlocks(from first: Int, slots: Int = 2, copyStream: (any Backend)? = nil) throws -> WanDiT {
        try require(parallelism == nil, "WanDiT.streamingBlocks", "a model spread over devices keeps its blocks on them")
        try require(streamer == nil, "WanDiT.streamingBlocks", "the model streams already")
        try require(first >= 0 && first <= config.layers && slots >= 1, "WanDiT.streamingBlocks",
                    "first streamed block \(first) of \(config.layers), \(slots) slots")
        if first == config.layers { return self }
        let copier = try BlockStreamer.copier(copyStream ?? backend.device.makeStream())
        let hostBlocks = try weights.blocks[first...].map { try BlockStreamer.hostCopy(of: $0, copier: copier) }
        let streamer = try BlockStreamer(hostBlocks: hostBlocks, first: first, slots: min(slots, config.layers - first),
                                         compute: backend, copier: copier)
        var w = weights
        w.blocks = Array(weights.blocks[..<first]) + streamer.hostBlocks
        let model = WanDiT(config: config, weights: w, backend: backend, streamer: streamer)
        model.chunkFrames = chunkFrames
        model.kvCache = kvCache
        model.hostKVCache = hostKVCache
        model.hostKVCacheFrom = hostKVCacheFrom
        model.attentionPrecision = attentionPrecision
        return model
    }

    /// Streaming's figures (nil when every block is on the device).
    public var weightStreaming: WeightStreamingStatistics? { streamer?.statistics }

    /// Calls `body` with each block in order, streamed blocks taken from their slot and released after `body`
    /// has issued its work.
    func forEachBlock(_ body: (Int, Block) throws -> Void) throws {
        guard let streamer else {
            for (i, b) in weights.blocks.enumerated() { try body(i, b) }
            return
        }
        for (i, b) in weights.blocks.enumerated() {
            guard i >= streamer.first else {
                try body(i, b)
                continue
            }
            let (block, slot) = try streamer.take(i - streamer.first)
            try body(i, block)
            try streamer.release(slot)
        }
    }
}

/// Where `WanDiT.load(streaming:)` puts the DiT's last blocks: in host memory, streamed through device slots.
public struct BlockStreaming: @unchecked Sendable {
    /// The first streamed block: blocks `0..<first` load onto the device, `first...` into host memory.
    public var first: Int
    /// Device slots the streamed blocks pass through (2 or 3).
    public var slots: Int
    /// The stream that uploads them: a stream of the model's device (`HostToDeviceCopying`).
    public var copyStream: any Backend
    /// A backend computing in host memory (the CPU's), where each streamed block's weights are read from the file,
    /// converted to the model's dtype, merged with a LoRA and quantized, one block at a time, before their bytes go
    /// to the block's host buffer (page-locked on CUDA). None of it touches the device.
    public var host: any Backend
    /// Stream the blocks from the memory-mapped weight file instead of host copies (host memory is short): the
    /// file must store them in the run's dtype, with no LoRA and no quantization (`BlockStreamer.mappedLayout`).
    public var fromMappedFile: Bool

    public init(first: Int, slots: Int, copyStream: any Backend, host: any Backend, fromMappedFile: Bool = false) {
        self.fromMappedFile = fromMappedFile
        self.first = first
        self.slots = slots
        self.copyStream = copyStream
        self.host = host
    }
}

/// What weight streaming moved.
public struct WeightStreamingStatistics: Sendable, Equatable {
    /// Blocks streamed, and the first of them.
    public var layers: Int
    public var firstLayer: Int
    /// Device slots they pass through.
    public var slots: Int
    /// Bytes uploaded by one pass over every block.
    public var bytesPerPass: Int
    /// Bytes uploaded since the model was made.
    public var bytesUploaded: Int
    /// Device bytes of the slots.
    public var slotBytes: Int
    /// Whether the blocks stream from the memory-mapped weight file (through bounce buffers), not host copies.
    public var fromMappedFile = false
}

/// The host copies of the streamed blocks, the device slots and the events that order them (`WanDiT.forEachBlock`).
final class BlockStreamer: @unchecked Sendable {
    let first: Int
    let compute: any Backend
    let copier: any HostToDeviceCopying
    /// Each streamed block with its tensors viewing its host buffer (their `backend` is the copy stream; no op
    /// runs on them).
    let hostBlocks: [WanDiT.Block]
    private let sources: [HostBlockSource]
    private let slots: [Tensor]
    /// Blocks streamed from the mapped file pass through these page-locked buffers, one per slot (empty when none
    /// does), and the upload that last read each.
    private let bounces: [any HostStorage]
    private var bounceUploads: [(any BackendEvent)?]
    private var released: [(any BackendEvent)?]
    /// Uploads issued and not yet taken, oldest first.
    private var ready: [(slot: Int, event: any BackendEvent)] = []
    /// Uploads issued and blocks taken since the start, counted over every pass (block u is u % count).
    private var issued = 0, taken = 0
    private var uploaded = 0
    private let lock = NSLock()

    /// Tensors of a block start at multiples of this in its buffer and slot.
    static let alignment = 256

    /// `hostBlocks`: each streamed block's host copy (`hostCopy(of:copier:)`) or its layout over the mapped file
    /// (`mappedLayout(of:)`), from block `first` on.
    init(hostBlocks: [(block: WanDiT.Block, source: HostBlockSource)], first: Int, slots count: Int, compute: any Backend,
         copier: any HostToDeviceCopying) throws {
        self.first = first
        self.compute = compute
        self.copier = copier
        self.hostBlocks = hostBlocks.map(\.block)
        self.sources = hostBlocks.map(\.source)
        let slotBytes = sources.map(\.byteCount).max() ?? 0
        self.slots = try (0..<count).map { _ in try compute.allocate([slotBytes], dtype: .uint8) }
        released = Array(repeating: nil, count: count)
        let mapped = sources.contains { if case .mapped = $0 { true } else { false } }
        bounces = mapped ? try (0..<count).map { _ in try copier.makeHostBuffer(bytes: slotBytes) } : []
        bounceUploads = Array(repeating: nil, count: mapped ? count : 0)
    }

    /// `block` (its tensors read from a memory-mapped weight file, in the run's dtype) laid out as its slot will
    /// hold it, without a copy: the upload copies each tensor's mapped bytes into the slot's bounce buffer, then the
    /// bounce buffer to the slot. Throws naming the tensor when one is not a view of the mapped file (the file
    /// stores another dtype, or the weight was merged with a LoRA or quantized).
    static func mappedLayout(of block: WanDiT.Block) throws -> (block: WanDiT.Block, source: HostBlockSource) {
        var pieces: [(source: Tensor, offset: Int)] = [], offset = 0
        let layout = try block.mapTensors { t in
            guard t.storage is MappedRegion, t.hostPointer != nil else {
                throw ReelError.input("streaming DiT blocks from the mapped weight file needs each weight in the run's "
                                      + "dtype as the file stores it: a \(t.dtype) \(t.shape) tensor is a converted copy "
                                      + "(convert the file to the run's dtype with reel convert, drop the LoRA or "
                                      + "--fp8/--int8, or give Reel more host memory)")
            }
            offset = aligned(offset)
            pieces.append((t, offset))
            defer { offset += t.byteCount }
            return t
        }
        let size = offset
        let storage = BlockLayout(byteCount: size)
        var placed = 0
        let views = try layout.mapTensors { t in
            let view = Tensor(storage: storage, byteOffset: pieces[placed].offset, shape: t.shape, dtype: t.dtype,
                              backend: t.backend)
            placed += 1
            return view
        }
        return (views, .mapped(bytes: size, pieces: pieces))
    }

    /// `stream` as the copier of streamed blocks, or an error naming it when it cannot copy from the host.
    static func copier(_ stream: any Backend) throws -> any HostToDeviceCopying {
        guard let copier = stream as? any HostToDeviceCopying else {
            throw ReelError.unsupported(backend: stream.name, op: "streamingBlocks", message: "no host-to-device copies")
        }
        return copier
    }

    /// `block` laid out in one host buffer of `copier`'s (page-locked on CUDA), each tensor at a multiple of
    /// `alignment`, and the block viewing it (its tensors' `backend` is `copier`; no op runs on them). `block`'s
    /// tensors may live anywhere (the device, the host, a mapped file): their bytes are downloaded.
    static func hostCopy(of block: WanDiT.Block, copier: any HostToDeviceCopying) throws
        -> (block: WanDiT.Block, source: HostBlockSource) {
        var size = 0
        _ = try block.mapTensors { t in
            size = aligned(size) + t.byteCount
            return t
        }
        let buffer = try copier.makeHostBuffer(bytes: size)
        var offset = 0
        let view = try block.mapTensors { t in
            offset = aligned(offset)
            let bytes = UnsafeMutableRawBufferPointer(start: buffer.baseAddress + offset, count: t.byteCount)
            try t.backend.download(t, into: bytes)
            let view = Tensor(storage: buffer, byteOffset: offset, shape: t.shape, dtype: t.dtype, backend: copier)
            offset += t.byteCount
            return view
        }
        return (view, .buffer(buffer))
    }

    static func aligned(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    var statistics: WeightStreamingStatistics {
        lock.withLock {
            WeightStreamingStatistics(layers: sources.count, firstLayer: first, slots: slots.count,
                                      bytesPerPass: sources.reduce(0) { $0 + $1.byteCount }, bytesUploaded: uploaded,
                                      slotBytes: slots.reduce(0) { $0 + $1.byteCount },
                                      fromMappedFile: !bounces.isEmpty)
        }
    }

    /// Streamed block `index` (0 = block `first`) in its slot, for work on the compute stream, and the slot to
    /// `release` after that work is issued. Blocks are taken in order, pass after pass.
    func take(_ index: Int) throws -> (WanDiT.Block, Int) {
        try lock.withLock {
            let count = sources.count
            if taken % count != index {
                // A pass ended early (an error): start over once everything queued is done.
                try copier.synchronize()
                try compute.synchronize()
                ready = []
                released = Array(repeating: nil, count: slots.count)
                bounceUploads = Array(repeating: nil, count: bounceUploads.count)
                taken = index
                issued = index
            }
            while issued < taken + slots.count { try issue() }
            let (slot, event) = ready.removeFirst()
            try compute.wait(for: event)
            taken += 1
            let base = slots[slot]
            let block = try hostBlocks[index].mapTensors { t in
                Tensor(storage: base.storage, byteOffset: base.byteOffset + t.byteOffset, shape: t.shape, dtype: t.dtype,
                       backend: compute)
            }
            return (block, slot)
        }
    }

    /// Marks `slot` free once the compute stream reaches the work issued so far.
    func release(_ slot: Int) throws {
        let event = try compute.recordEvent()
        lock.withLock { released[slot] = event }
    }

    /// Queues the next upload on the copy stream. Call with the lock held.
    private func issue() throws {
        let slot = issued % slots.count, index = issued % sources.count
        if let free = released[slot] { try copier.wait(for: free) }
        let source = sources[index]
        let target = try slots[slot].narrowed(axis: 0, start: 0, length: source.byteCount)
        switch source {
        case .buffer(let buffer):
            try copier.copy(fromHost: buffer.baseAddress, into: target)
            ready.append((slot, try copier.recordEvent()))
        case .mapped(_, let pieces):
            // The one host wait of streaming: the slot's bounce buffer is refilled once its last upload has read it
            // (issued `slots` uploads ago, normally long done).
            if let last = bounceUploads[slot] { try last.synchronize() }
            let bounce = bounces[slot].baseAddress
            for (tensor, offset) in pieces {
                (bounce + offset).copyMemory(from: tensor.hostPointer!, byteCount: tensor.byteCount)
            }
            try copier.copy(fromHost: bounce, into: target)
            let done = try copier.recordEvent()
            bounceUploads[slot] = done
            ready.append((slot, done))
        }
        uploaded += source.byteCount
        issued += 1
    }
}

/// Where a streamed block's bytes live on their way to a slot.
enum HostBlockSource {
    /// Its own host buffer laid out as the slot (page-locked on CUDA): one upload.
    case buffer(any HostStorage)
    /// The memory-mapped weight file: each tensor's bytes copied into the slot's bounce buffer at `offset`, then
    /// one upload of the bounce buffer. No host copy of the block is kept.
    case mapped(bytes: Int, pieces: [(source: Tensor, offset: Int)])

    var byteCount: Int {
        switch self {
        case .buffer(let b): b.byteCount
        case .mapped(let bytes, _): bytes
        }
    }
}

/// The layout of a block streamed from the mapped file: no bytes of its own (its tensors' offsets say where each
/// goes in the bounce buffer and the slot; no op reads them).
final class BlockLayout: TensorStorage, @unchecked Sendable {
    let byteCount: Int
    init(byteCount: Int) { self.byteCount = byteCount }
}

extension WanDiT.Block {
    /// The block with every tensor replaced by `f(tensor)`, in a fixed order (a quantized layer's values once, FP8 or INT8: its
    /// `weight` is them).
    func mapTensors(_ f: (Tensor) throws -> Tensor) throws -> WanDiT.Block {
        var b = self
        b.modulation.table = try f(modulation.table)
        b.selfAttention = try selfAttention.mapTensors(f)
        if let n = crossAttentionNorm {
            b.crossAttentionNorm?.weight = try f(n.weight)
            b.crossAttentionNorm?.bias = try f(n.bias)
        }
        b.crossAttention = try crossAttention.mapTensors(f)
        b.ffn.up = try ffn.up.mapTensors(f)
        b.ffn.down = try ffn.down.mapTensors(f)
        return b
    }
}

extension WanDiT.Attention {
    func mapTensors(_ f: (Tensor) throws -> Tensor) throws -> WanDiT.Attention {
        var a = self
        a.q = try q.mapTensors(f)
        a.k = try k.mapTensors(f)
        a.v = try v.mapTensors(f)
        a.o = try o.mapTensors(f)
        a.normQ.weight = try f(normQ.weight)
        a.normK.weight = try f(normK.weight)
        return a
    }
}

extension WanDiT.Linear {
    func mapTensors(_ f: (Tensor) throws -> Tensor) throws -> WanDiT.Linear {
        var l = self
        if let q = quantized {
            let values = try f(q.values)
            l.quantized = try RowQuantized(values: values, scales: try f(q.scales), sourceType: q.sourceType)
            l.weight = values
        } else {
            l.weight = try f(weight)
        }
        l.bias = try bias.map(f)
        return l
    }
}
