import Foundation
import ReelCore

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
        try require(parallelism == nil, "WanDiT.streamingBlocks", "a sequence-parallel model keeps its blocks on its devices")
        try require(streamer == nil, "WanDiT.streamingBlocks", "the model streams already")
        try require(first >= 0 && first <= config.layers && slots >= 1, "WanDiT.streamingBlocks",
                    "first streamed block \(first) of \(config.layers), \(slots) slots")
        if first == config.layers { return self }
        let copier = try BlockStreamer.copier(copyStream ?? backend.device.makeStream())
        let streamer = try BlockStreamer(hostBlocks: try weights.blocks[first...].map { try BlockStreamer.hostCopy(of: $0, copier: copier) },
                                         first: first, slots: min(slots, config.layers - first), compute: backend, copier: copier)
        var w = weights
        w.blocks = Array(weights.blocks[..<first]) + streamer.hostBlocks
        let model = WanDiT(config: config, weights: w, backend: backend, streamer: streamer)
        model.chunkFrames = chunkFrames
        model.kvCache = kvCache
        model.hostKVCache = hostKVCache
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

    public init(first: Int, slots: Int, copyStream: any Backend, host: any Backend) {
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
}

/// The host copies of the streamed blocks, the device slots and the events that order them (`WanDiT.forEachBlock`).
final class BlockStreamer: @unchecked Sendable {
    let first: Int
    let compute: any Backend
    let copier: any HostToDeviceCopying
    /// Each streamed block with its tensors viewing its host buffer (their `backend` is the copy stream; no op
    /// runs on them).
    let hostBlocks: [WanDiT.Block]
    private let buffers: [any HostStorage]
    private let slots: [Tensor]
    private var released: [(any BackendEvent)?]
    /// Uploads issued and not yet taken, oldest first.
    private var ready: [(slot: Int, event: any BackendEvent)] = []
    /// Uploads issued and blocks taken since the start, counted over every pass (block u is u % count).
    private var issued = 0, taken = 0
    private var uploaded = 0
    private let lock = NSLock()

    /// Tensors of a block start at multiples of this in its buffer and slot.
    static let alignment = 256

    /// `hostBlocks`: each streamed block's host copy (`hostCopy(of:copier:)`), from block `first` on.
    init(hostBlocks: [(block: WanDiT.Block, buffer: any HostStorage)], first: Int, slots count: Int, compute: any Backend,
         copier: any HostToDeviceCopying) throws {
        self.first = first
        self.compute = compute
        self.copier = copier
        self.hostBlocks = hostBlocks.map(\.block)
        self.buffers = hostBlocks.map(\.buffer)
        let slotBytes = buffers.map(\.byteCount).max() ?? 0
        self.slots = try (0..<count).map { _ in try compute.allocate([slotBytes], dtype: .uint8) }
        released = Array(repeating: nil, count: count)
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
        -> (block: WanDiT.Block, buffer: any HostStorage) {
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
        return (view, buffer)
    }

    static func aligned(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    var statistics: WeightStreamingStatistics {
        lock.withLock {
            WeightStreamingStatistics(layers: buffers.count, firstLayer: first, slots: slots.count,
                                      bytesPerPass: buffers.reduce(0) { $0 + $1.byteCount }, bytesUploaded: uploaded,
                                      slotBytes: slots.reduce(0) { $0 + $1.byteCount })
        }
    }

    /// Streamed block `index` (0 = block `first`) in its slot, for work on the compute stream, and the slot to
    /// `release` after that work is issued. Blocks are taken in order, pass after pass.
    func take(_ index: Int) throws -> (WanDiT.Block, Int) {
        try lock.withLock {
            let count = buffers.count
            if taken % count != index {
                // A pass ended early (an error): start over once everything queued is done.
                try copier.synchronize()
                try compute.synchronize()
                ready = []
                released = Array(repeating: nil, count: slots.count)
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
        let slot = issued % slots.count, index = issued % buffers.count
        if let free = released[slot] { try copier.wait(for: free) }
        let buffer = buffers[index]
        let target = try slots[slot].narrowed(axis: 0, start: 0, length: buffer.byteCount)
        try copier.copy(fromHost: buffer.baseAddress, into: target)
        ready.append((slot, try copier.recordEvent()))
        uploaded += buffer.byteCount
        issued += 1
    }
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
