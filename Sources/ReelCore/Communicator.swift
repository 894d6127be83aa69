/// Collectives over the ranks of one process: rank r is a stream (`streams[r]`) of its own device, and one
/// host thread issues every rank's part of a collective (NCCL's single-process model, `ncclCommInitAll`).
///
/// Every call takes one tensor (or one list) per rank, indexed by rank. A rank's inputs live on its device;
/// an input made on another stream of that device is waited for with an event first (`prepared`). Outputs
/// are new tensors on the ranks' streams, ordered after the collective there: work issued later on
/// `streams[r]` sees them without a host wait. Data movement (`allGather`, `allToAll`, `send`) is exact;
/// `allReduceSum`'s order of additions is the implementation's (the CPU adds rank 0, 1, ... in float32).
public protocol Communicator: AnyObject, Sendable {
    /// "cpu x 2", "nccl cuda:0,1", ...
    var name: String { get }
    /// Rank r's stream: collectives read and write on it.
    var streams: [any Backend] { get }

    /// The elementwise sum of every rank's tensor, given to every rank (same shapes and dtypes; f32, f16
    /// or bf16: the sum is formed in float32 and stored in the tensors' dtype).
    func allReduceSum(_ tensors: [Tensor]) throws -> [Tensor]
    /// Every rank's tensor (same shapes and dtypes) stacked in rank order along a new leading axis:
    /// `[ranks, ...]`, given to every rank.
    func allGather(_ tensors: [Tensor]) throws -> [Tensor]
    /// `chunks[i][j]` is what rank i sends to rank j (on rank i's device); `result[j][i]` is what rank j
    /// received from rank i (on rank j's stream). Chunks may differ in shape and dtype between pairs.
    func allToAll(_ chunks: [[Tensor]]) throws -> [[Tensor]]
    /// `tensor` (on rank `source`'s device) copied to rank `destination`'s stream; `source ==
    /// destination` returns it as it is.
    func send(_ tensor: Tensor, from source: Int, to destination: Int) throws -> Tensor
}

extension Communicator {
    /// The number of ranks.
    public var ranks: Int { streams.count }

    /// `tensor` (on rank `root`'s device) given to every rank: `result[r]` on rank r's stream.
    public func broadcast(_ tensor: Tensor, from root: Int) throws -> [Tensor] {
        try (0..<ranks).map { try send(tensor, from: root, to: $0) }
    }

    /// `tensors` checked to be one per rank, each on its rank's device, and made ready on the rank's
    /// stream: a tensor of another stream of that device is waited for with an event (no host wait).
    public func prepared(_ tensors: [Tensor], _ op: String) throws -> [Tensor] {
        try require(tensors.count == ranks, op, "\(tensors.count) tensors for \(ranks) ranks")
        return try tensors.enumerated().map { r, t in try prepared(t, rank: r, op) }
    }

    /// `tensor`, of rank `rank`'s device, for work on its stream (see `prepared(_:_:)`).
    public func prepared(_ tensor: Tensor, rank: Int, _ op: String) throws -> Tensor {
        try require(rank >= 0 && rank < ranks, op, "rank \(rank) out of 0..<\(ranks)")
        let stream = streams[rank]
        try require(tensor.backend.device.isSame(as: stream.device), op,
                    "rank \(rank)'s tensor lives on \(tensor.backend.device.name), the rank is \(stream.device.name)")
        if tensor.backend === stream { return tensor }
        try stream.wait(for: try tensor.backend.recordEvent())
        return tensor.issued(on: stream)
    }
}

/// Why a set of streams cannot form a communicator, checked the same way by every implementation.
public enum CommunicatorValidation {
    /// Throws unless `streams` are at least one and each on a device of its own.
    public static func check(_ streams: [any Backend], _ what: String) throws {
        guard !streams.isEmpty else { throw ReelError.input("\(what): a communicator needs at least one rank") }
        for i in streams.indices {
            for j in streams.indices where j > i && streams[i].device.isSame(as: streams[j].device) {
                throw ReelError.input("\(what): ranks \(i) and \(j) are both on \(streams[i].device.name); "
                                      + "each rank needs a device of its own")
            }
        }
    }
}
