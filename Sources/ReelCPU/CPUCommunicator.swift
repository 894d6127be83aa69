import ReelCore

/// The collectives over CPU devices of one process (`CPUDevice(ordinal:)`): the oracle the NCCL
/// communicator is checked against (`reel check-comm`) and the way code spread over several devices runs
/// in tests. Ops are synchronous; data moves as bytes, so gathers and all-to-all are exact, and the sum of
/// `allReduceSum` is formed in float32 adding rank 0, 1, 2, ... in order.
public final class CPUCommunicator: Communicator, @unchecked Sendable {
    public let streams: [any Backend]
    public var name: String { "cpu x \(streams.count)" }

    /// A communicator over `streams`: CPU streams, each of its own `CPUDevice`.
    public init(streams: [any Backend]) throws {
        try CommunicatorValidation.check(streams, "CPU communicator")
        for s in streams where !(s is CPUBackend) {
            throw ReelError.input("CPU communicator: rank \(s.name) is not a CPU stream")
        }
        self.streams = streams
    }

    /// `ranks` new CPU devices ("cpu:0", "cpu:1", ...), one stream each.
    public convenience init(ranks: Int, threads: Int? = nil, gemm: GEMMPath = .auto) throws {
        guard ranks >= 1 else { throw ReelError.input("CPU communicator: \(ranks) ranks; at least 1") }
        try self.init(streams: (0..<ranks).map {
            CPUBackend(threads: threads, gemm: gemm, device: CPUDevice(ordinal: $0))
        })
    }

    public func allReduceSum(_ tensors: [Tensor]) throws -> [Tensor] {
        let inputs = try prepared(tensors, "allReduceSum")
        let first = inputs[0]
        try require(inputs.allSatisfy { $0.shape == first.shape && $0.dtype == first.dtype }, "allReduceSum",
                    "ranks' tensors differ: \(inputs.map { "\($0.shape) \($0.dtype)" })")
        try require([DType.f32, .f16, .bf16].contains(first.dtype), "allReduceSum", "sums f32, f16 or bf16, got \(first.dtype)")
        var sum = try first.toFloats()
        for t in inputs.dropFirst() {
            let v = try t.toFloats()
            for i in sum.indices { sum[i] += v[i] }
        }
        return try streams.map { try $0.tensor(sum, shape: first.shape, dtype: first.dtype) }
    }

    public func allGather(_ tensors: [Tensor]) throws -> [Tensor] {
        let inputs = try prepared(tensors, "allGather")
        let first = inputs[0]
        try require(inputs.allSatisfy { $0.shape == first.shape && $0.dtype == first.dtype }, "allGather",
                    "ranks' tensors differ: \(inputs.map { "\($0.shape) \($0.dtype)" })")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(first.byteCount * ranks)
        for t in inputs { bytes += try t.backend.downloadBytes(t) }
        let shape = Shape([ranks] + first.shape.dims)
        return try streams.map { s in try bytes.withUnsafeBytes { try s.upload($0, shape: shape, dtype: first.dtype) } }
    }

    public func allToAll(_ chunks: [[Tensor]]) throws -> [[Tensor]] {
        try require(chunks.count == ranks && chunks.allSatisfy { $0.count == ranks }, "allToAll",
                    "expected \(ranks) x \(ranks) chunks, got \(chunks.map(\.count))")
        let ready = try chunks.enumerated().map { i, row in try row.map { try prepared($0, rank: i, "allToAll") } }
        return try (0..<ranks).map { j in try (0..<ranks).map { i in try move(ready[i][j], to: j) } }
    }

    public func send(_ tensor: Tensor, from source: Int, to destination: Int) throws -> Tensor {
        try require(destination >= 0 && destination < ranks, "send", "rank \(destination) out of 0..<\(ranks)")
        let t = try prepared(tensor, rank: source, "send")
        return source == destination ? t : try move(t, to: destination)
    }

    /// A copy of `t`'s bytes on rank `rank`'s stream.
    private func move(_ t: Tensor, to rank: Int) throws -> Tensor {
        let bytes = try t.backend.downloadBytes(t)
        return try bytes.withUnsafeBytes { try streams[rank].upload($0, shape: t.shape, dtype: t.dtype) }
    }
}
