import Foundation
import ReelCore

/// The collectives between GPUs of this process through NCCL: rank r is a stream of GPU `ordinals[r]`, and
/// every collective is queued on the ranks' streams (ordered after the work already issued there, before the
/// work issued later: no host wait). All-to-all is NCCL's grouped send/recv, one pair per chunk; gathers
/// and sends move bytes (any dtype), sums are NCCL's in the tensors' dtype.
public final class NCCLCommunicator: Communicator, @unchecked Sendable {
    public let streams: [any Backend]
    /// The ranks' streams as CUDA backends (`streams`, typed).
    public let gpus: [CUDABackend]
    let nccl: NCCL
    private let comms: [NCCL.Comm]
    /// Held while one collective is issued for every rank: threads sharing the communicator (two sessions on one
    /// `reel serve` engine) then queue whole collectives in one order on every rank. NCCL requires that order (a
    /// collective issued on rank 0 before another and after it on rank 1 deadlocks) and its communicators are not
    /// safe to issue on from several threads at once.
    private let issueLock = NSLock()

    public var name: String { "nccl cuda:" + gpus.map { String($0.cudaDevice.info.ordinal) }.joined(separator: ",") }

    /// A communicator over GPUs `ordinals` (distinct, all visible), with a new stream on each. One ordinal
    /// gives a one-rank communicator (collectives are copies); more need as many GPUs.
    public convenience init(devices ordinals: [Int], tuning: Tuning = .standard) throws {
        try NCCLCommunicator.checkDevices(ordinals)
        try self.init(streams: ordinals.map { try CUDABackend(device: $0, tuning: tuning) })
    }

    /// A communicator over `streams`, each of a GPU of its own.
    public init(streams: [CUDABackend]) throws {
        try CommunicatorValidation.check(streams, "NCCL communicator")
        nccl = try CUDALibraries.nccl()
        gpus = streams
        self.streams = streams
        var handles = [NCCL.Comm](repeating: nil, count: streams.count)
        let ordinals = streams.map { Int32($0.cudaDevice.info.ordinal) }
        try nccl.check(nccl.ncclCommInitAll(&handles, Int32(streams.count), ordinals),
                       "ncclCommInitAll(\(streams.count) GPUs: \(ordinals.map(String.init).joined(separator: ",")))")
        comms = handles
        try gpus[0].cudaDevice.makeCurrent()
    }

    deinit {
        for c in comms { _ = nccl.ncclCommDestroy(c) }
    }

    /// Throws a clear error unless `ordinals` name distinct, visible GPUs.
    public static func checkDevices(_ ordinals: [Int]) throws {
        guard !ordinals.isEmpty else { throw ReelError.input("NCCL: no GPU named") }
        guard Set(ordinals).count == ordinals.count else {
            throw ReelError.input("NCCL: GPUs \(ordinals) name one device twice; each rank needs a GPU of its own")
        }
        let driver = try CUDALibraries.driver()
        var count: Int32 = 0
        try driver.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        if let missing = ordinals.first(where: { $0 < 0 || $0 >= Int(count) }) {
            throw ReelError.input("NCCL over \(ordinals.count) GPUs (cuda:\(ordinals.map(String.init).joined(separator: ","))) "
                                  + "needs GPU cuda:\(missing), but this machine shows \(count) GPU(s) (`reel devices`)"
                                  + (count < ordinals.count ? "; \(ordinals.count) ranks need \(ordinals.count) GPUs" : ""))
        }
    }

    /// Runs `body` between ncclGroupStart and ncclGroupEnd, then binds rank 0's context again (NCCL switches
    /// devices as it issues each rank's part).
    private func group(_ what: String, _ body: () throws -> Void) throws {
        issueLock.lock()
        defer { issueLock.unlock() }
        try nccl.check(nccl.ncclGroupStart(), "ncclGroupStart (\(what))")
        var failure: Error?
        do { try body() } catch { failure = error }
        let end = nccl.ncclGroupEnd()
        try gpus[0].cudaDevice.makeCurrent()
        if let failure { throw failure }
        try nccl.check(end, "ncclGroupEnd (\(what))")
    }

    private func pointer(_ t: Tensor, rank: Int, _ op: String) throws -> UnsafeMutableRawPointer? {
        UnsafeMutableRawPointer(bitPattern: UInt(try gpus[rank].pointer(t, op)))
    }

    public func allReduceSum(_ tensors: [Tensor]) throws -> [Tensor] {
        let op = "allReduceSum", inputs = try prepared(tensors, op), first = inputs[0]
        try require(inputs.allSatisfy { $0.shape == first.shape && $0.dtype == first.dtype }, op,
                    "ranks' tensors differ: \(inputs.map { "\($0.shape) \($0.dtype)" })")
        guard let type = NCCL.reductionType(first.dtype) else {
            throw ReelError.invalidArgument(op: op, message: "sums f32, f16 or bf16, got \(first.dtype)")
        }
        let outputs = try gpus.map { try $0.allocate(first.shape, dtype: first.dtype) }
        try group(op) {
            for r in gpus.indices {
                try nccl.check(nccl.ncclAllReduce(try pointer(inputs[r], rank: r, op), try pointer(outputs[r], rank: r, op),
                                                  first.count, type, NCCL.sum, comms[r], gpus[r].stream),
                               "ncclAllReduce (rank \(r))", comm: comms[r])
            }
        }
        return outputs
    }

    public func allGather(_ tensors: [Tensor]) throws -> [Tensor] {
        let op = "allGather", inputs = try prepared(tensors, op), first = inputs[0]
        try require(inputs.allSatisfy { $0.shape == first.shape && $0.dtype == first.dtype }, op,
                    "ranks' tensors differ: \(inputs.map { "\($0.shape) \($0.dtype)" })")
        let shape = Shape([ranks] + first.shape.dims)
        let outputs = try gpus.map { try $0.allocate(shape, dtype: first.dtype) }
        try group(op) {
            for r in gpus.indices {
                try nccl.check(nccl.ncclAllGather(try pointer(inputs[r], rank: r, op), try pointer(outputs[r], rank: r, op),
                                                  first.byteCount, NCCL.int8, comms[r], gpus[r].stream),
                               "ncclAllGather (rank \(r))", comm: comms[r])
            }
        }
        return outputs
    }

    public func allToAll(_ chunks: [[Tensor]]) throws -> [[Tensor]] {
        let op = "allToAll"
        try require(chunks.count == ranks && chunks.allSatisfy { $0.count == ranks }, op,
                    "expected \(ranks) x \(ranks) chunks, got \(chunks.map(\.count))")
        let ready = try chunks.enumerated().map { i, row in try row.map { try prepared($0, rank: i, op) } }
        // A rank's own chunk stays where it is; every other pair is one send and one receive.
        var received: [[Tensor]] = []
        for j in 0..<ranks {
            var row: [Tensor] = []
            for i in 0..<ranks {
                let chunk: Tensor = ready[i][j]
                row.append(i == j ? chunk : try gpus[j].allocate(chunk.shape, dtype: chunk.dtype))
            }
            received.append(row)
        }
        try group(op) {
            for i in 0..<ranks {
                for j in 0..<ranks where i != j {
                    try issueSend(ready[i][j], from: i, to: j, op)
                    try issueReceive(into: received[j][i], at: j, from: i, op)
                }
            }
        }
        return received
    }

    public func send(_ tensor: Tensor, from source: Int, to destination: Int) throws -> Tensor {
        let op = "send"
        try require(destination >= 0 && destination < ranks, op, "rank \(destination) out of 0..<\(ranks)")
        let t = try prepared(tensor, rank: source, op)
        if source == destination { return t }
        let out = try gpus[destination].allocate(t.shape, dtype: t.dtype)
        try group(op) {
            try issueSend(t, from: source, to: destination, op)
            try issueReceive(into: out, at: destination, from: source, op)
        }
        return out
    }

    private func issueSend(_ t: Tensor, from i: Int, to j: Int, _ op: String) throws {
        try nccl.check(nccl.ncclSend(try pointer(t, rank: i, op), t.byteCount, NCCL.int8, Int32(j), comms[i], gpus[i].stream),
                       "ncclSend (rank \(i) to \(j))", comm: comms[i])
    }

    private func issueReceive(into t: Tensor, at j: Int, from i: Int, _ op: String) throws {
        try nccl.check(nccl.ncclRecv(try pointer(t, rank: j, op), t.byteCount, NCCL.int8, Int32(i), comms[j], gpus[j].stream),
                       "ncclRecv (rank \(j) from \(i))", comm: comms[j])
    }
}
