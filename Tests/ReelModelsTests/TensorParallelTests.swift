import Foundation
import Testing
import ReelCore
import ReelCPU
@testable import ReelModels

/// The Wan DiT spread over N in-process CPU devices by tensor parallelism equals the one-device model up to
/// float rounding (the all-reduces add the ranks' partial sums in another order than one GEMM, and the q/k
/// norms' sums of squares are taken by rank): the velocities and, head for head, the KV cache, over passes
/// that fill the ring, wrap it, switch the prompt and recompute it (a recache), and generate again. Wrong
/// variants (a norm over each rank's own heads, the FFN's all-reduce skipped) land far past the tolerance.
@Suite struct TensorParallelTests {
    /// 12 heads (as Wan 1.3B) of size 8 and 144 hidden units: 2, 3, 4 and 6 ranks divide both.
    static let config = WanDiTConfig(dim: 96, ffnDim: 144, heads: 12, layers: 3, textDim: 16)
    /// ||got - want|| / ||want||: f32 rounding gives about 1e-7; a wrong split about 1.
    static let tolerance = 1e-5

    func relativeError(_ got: [Float], _ want: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for (g, w) in zip(got, want) { num += Double(g - w) * Double(g - w); den += Double(w) * Double(w) }
        return (num / den).squareRoot()
    }

    func models(ranks: Int, config: WanDiTConfig = config, fault: FaultyCommunicator.Fault? = nil) throws
        -> (single: WanDiT, parallel: WanDiT, backend: CPUBackend) {
        let backend = CPUBackend(gemm: .own)
        let weights = try WanDiT.randomWeights(config, on: backend, seed: 4)
        let single = try WanDiT.load(from: weights, heads: config.heads, backend: backend).withTextLength(8)
        let cpu = try CPUCommunicator(ranks: ranks, gemm: .own)
        let comm: any Communicator = fault.map { FaultyCommunicator(cpu, fault: $0, dim: config.dim) } ?? cpu
        let parallel = try WanDiT.loadTensorParallel(from: weights, heads: config.heads, communicator: comm)
            .withTextLength(8)
        return (single, parallel, backend)
    }

    /// Runs the passes on both models and returns the largest relative error of a velocity and of a cached
    /// layer's keys or values (each rank's heads against the one-device cache's).
    func compare(ranks: Int, fault: FaultyCommunicator.Fault? = nil) throws -> (velocity: Double, cache: Double) {
        let (single, parallel, backend) = try models(ranks: ranks, fault: fault)
        let c = Self.config
        let embeddings = try (0..<2).map {
            try backend.randomNormal([5, c.textDim], seed: 9 + UInt64($0), offset: 0, dtype: .f32)
        }
        let prompts1 = try embeddings.map { try single.encodePrompt($0) }
        let prompts2 = try embeddings.map { try parallel.encodePrompt($0) }
        let c1 = try single.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        let c2 = try parallel.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        let latents = try backend.randomNormal([9, 4, 6, 16], seed: 11, offset: 0, dtype: .f32)
        let block = try backend.slice(latents, axis: 0, start: 0, length: 3)
        // (start, latents, timestep, needs output, prompt): fill the ring; wrap it; switch the prompt and
        // recompute the window (LongLive's recache); a block with the new prompt.
        let passes: [(Int, Tensor, Float, Bool, Int)] = [(0, latents, 900, true, 0), (9, latents, 500, true, 0),
                                                         (9, latents, 0, false, 1), (18, block, 250, true, 1)]
        var worst = (velocity: 0.0, cache: 0.0)
        let perRank = c.heads / ranks
        for (start, x, t, needsOutput, p) in passes {
            let access = WanDiT.CacheAccess(startFrame: start, needsOutput: needsOutput)
            let a = try single.forward(x, timestep: t, prompt: prompts1[p], cache: c1, access: access)
            let b = try parallel.forward(x, timestep: t, prompt: prompts2[p], cache: c2, access: access)
            #expect((a == nil) == !needsOutput && (b == nil) == !needsOutput)
            if let a, let b {
                #expect(b.backend === parallel.backend && b.shape == a.shape)
                worst.velocity = max(worst.velocity, relativeError(try b.toFloats(), try a.toFloats()))
            }
            for layer in 0..<c.layers {
                for (r, shard) in c2.shards.enumerated() {
                    let heads = { (t: Tensor) throws -> [Float] in
                        try backend.slice(t, axis: 2, start: r * perRank, length: perRank).toFloats()
                    }
                    let keys = relativeError(try shard.keys[layer].toFloats(), try heads(c1.keys[layer]))
                    let values = relativeError(try shard.values[layer].toFloats(), try heads(c1.values[layer]))
                    worst.cache = max(worst.cache, keys, values)
                }
            }
        }
        #expect(c2.endFrame == c1.endFrame)
        return worst
    }

    @Test(arguments: [1, 2, 3, 4])
    func parallelPassesEqualTheOneDeviceModelUpToRounding(ranks: Int) throws {
        let worst = try compare(ranks: ranks)
        print("tensor parallel over \(ranks) CPU ranks: velocity \(worst.velocity), cache \(worst.cache) relative error")
        #expect(worst.velocity < Self.tolerance && worst.cache < Self.tolerance)
    }

    /// Negative controls: each wrong variant moves the velocities (and for the norm, the cache) far past the
    /// tolerance, so the comparison above can fail.
    @Test func wrongSplitsMoveFarPastTolerance() throws {
        let ownHeads = try compare(ranks: 2, fault: .normOverOwnHeads)
        let noFFNSum = try compare(ranks: 2, fault: .ffnSumSkipped)
        print("tensor parallel, wrong variants: q/k norm over own heads \(ownHeads), FFN all-reduce skipped \(noFFNSum)")
        #expect(ownHeads.velocity > 1e-2 && ownHeads.cache > 1e-2)
        #expect(noFFNSum.velocity > 1e-2)
    }

    /// Each rank holds 1/N of every block linear (its heads' q/k/v rows and o columns, its FFN hidden units),
    /// the row-parallel biases on rank 0 only, and 1/N of the KV cache.
    @Test func eachRankHoldsItsShareOfTheWeightsAndCache() throws {
        let (single, parallel, _) = try models(ranks: 3)
        let c = Self.config, p = try #require(parallel.parallelism)
        #expect(p.scheme == .tensor && p.replicas.count == 3)
        #expect(parallel.withTextLength(8).parallelism?.scheme == .tensor)
        for (r, replica) in p.replicas.enumerated() {
            let b = replica.weights.blocks[1]
            #expect(b.selfAttention.q.weight.shape == [c.dim / 3, c.dim])
            #expect(b.selfAttention.o.weight.shape == [c.dim, c.dim / 3])
            #expect(b.crossAttention.k.weight.shape == [c.dim / 3, c.dim])
            #expect(b.selfAttention.normQ.weight.shape == [c.dim / 3])
            #expect(b.ffn.up.weight.shape == [c.ffnDim / 3, c.dim] && b.ffn.down.weight.shape == [c.dim, c.ffnDim / 3])
            #expect((b.selfAttention.o.bias != nil) == (r == 0) && (b.ffn.down.bias != nil) == (r == 0))
            #expect(replica.weights.head.modulation.shape == single.weights.head.modulation.shape)
        }
        // The blocks' weights: a third each, less the modulation tables and norm3 every rank holds whole and the
        // row-parallel biases only rank 0 holds.
        let whole = try #require(try SequenceParallelism(communicator: p.communicator, replicas: [single])
            .blockWeightBytes().first)
        let shares = try p.blockWeightBytes()
        let replicated = c.layers * 4 * (6 * c.dim + 2 * c.dim), biases = c.layers * 4 * 3 * c.dim
        #expect(shares == [biases, 0, 0].map { (whole - replicated - biases) / 3 + replicated + $0 })
        let c1 = try single.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        let c2 = try parallel.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        #expect(c2.shards.count == 3 && c2.shards.allSatisfy { $0.byteCount * 3 == c1.byteCount })
    }

    @Test func splitsThatDoNotDivideAndMismatchedPartsAreClearErrors() throws {
        let backend = CPUBackend(gemm: .own)
        let weights = try WanDiT.randomWeights(Self.config, on: backend, seed: 1)
        do {
            _ = try WanDiT.loadTensorParallel(from: weights, heads: 12, communicator: try CPUCommunicator(ranks: 5))
            Issue.record("12 heads split over 5 ranks")
        } catch let ReelError.input(message) {
            #expect(message.contains("12 attention heads do not divide by 5 ranks"))
            #expect(message.contains("1, 2, 3, 4, 6, 12"))
        }
        let odd = WanDiTConfig(dim: 96, ffnDim: 128, heads: 12, layers: 1, textDim: 16)
        do {
            _ = try WanDiT.loadTensorParallel(from: try WanDiT.randomWeights(odd, on: backend, seed: 1), heads: 12,
                                              communicator: try CPUCommunicator(ranks: 3))
            Issue.record("128 hidden units split over 3 ranks")
        } catch let ReelError.input(message) {
            #expect(message.contains("128 FFN hidden units do not divide by 3 ranks") && message.contains("1, 2, 4"))
        }
        // FP8/INT8 is refused; a prompt of a one-device or sequence-parallel model, a one-device cache too.
        let (single, parallel, _) = try models(ranks: 2)
        do {
            _ = try parallel.quantized(.fp8(.feedForward))
            Issue.record("a tensor-parallel model was quantized")
        } catch let ReelError.invalidArgument(_, message) {
            #expect(message.contains("--parallelism sequence"))
        }
        let comm = try CPUCommunicator(ranks: 2, gemm: .own)
        let sequence = try WanDiT.loadSequenceParallel(from: weights, heads: 12, communicator: comm).withTextLength(8)
        let embedding = try backend.randomNormal([5, Self.config.textDim], seed: 9, offset: 0, dtype: .f32)
        let latents = try backend.randomNormal([3, 4, 6, 16], seed: 11, offset: 0, dtype: .f32)
        let cache = try parallel.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        for wrong in [try single.encodePrompt(embedding), try sequence.encodePrompt(embedding)] {
            #expect(throws: ReelError.self) {
                _ = try parallel.forward(latents, timestep: 500, prompt: wrong, cache: cache,
                                         access: .init(startFrame: 0))
            }
        }
        #expect(throws: ReelError.self) {
            _ = try parallel.forward(latents, timestep: 500, prompt: try parallel.encodePrompt(embedding),
                                     cache: try single.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6),
                                     access: .init(startFrame: 0))
        }
    }
}

/// A communicator that gets the tensor-parallel DiT's collectives wrong, for the negative controls: `normOverOwnHeads`
/// gives each rank its own `[rows, 1]` float32 sums of squares (times the ranks) instead of their total, so each rank's
/// q/k norm covers its own heads; `ffnSumSkipped` leaves the third all-reduce of `[..., dim]` rows unsummed, the first
/// layer's FFN output in the first pass (a layer's are self-attention's, cross-attention's, then the FFN's).
final class FaultyCommunicator: Communicator, @unchecked Sendable {
    enum Fault { case normOverOwnHeads, ffnSumSkipped }
    let inner: any Communicator
    let fault: Fault
    let dim: Int
    private var rowReductions = 0

    init(_ inner: any Communicator, fault: Fault, dim: Int) {
        self.inner = inner
        self.fault = fault
        self.dim = dim
    }

    var name: String { "faulty " + inner.name }
    var streams: [any Backend] { inner.streams }

    func allReduceSum(_ tensors: [Tensor]) throws -> [Tensor] {
        let shape = tensors[0].shape
        switch fault {
        case .normOverOwnHeads where shape.last == 1 && tensors[0].dtype == .f32:
            return try tensors.map { try $0.backend.affine($0, scale: Float(tensors.count), bias: 0) }
        case .ffnSumSkipped where shape.last == dim:
            rowReductions += 1
            if rowReductions == 3 { return tensors }
        default:
            break
        }
        return try inner.allReduceSum(tensors)
    }

    func allGather(_ tensors: [Tensor]) throws -> [Tensor] { try inner.allGather(tensors) }
    func allToAll(_ chunks: [[Tensor]]) throws -> [[Tensor]] { try inner.allToAll(chunks) }
    func send(_ tensor: Tensor, from source: Int, to destination: Int) throws -> Tensor {
        try inner.send(tensor, from: source, to: destination)
    }
}
