import Foundation
import Testing
import ReelCore
import ReelCPU
@testable import ReelModels

/// The CPU communicator's collectives, exactly.
@Suite struct CPUCommunicatorTests {
    func values(_ n: Int, _ base: Float) -> [Float] { (0..<n).map { base + Float($0) * 0.25 } }

    @Test func collectivesMoveAndSumExactly() throws {
        let comm = try CPUCommunicator(ranks: 3)
        #expect(comm.ranks == 3 && comm.name == "cpu x 3")
        #expect(Set(comm.streams.map(\.device.name)) == ["cpu:0", "cpu:1", "cpu:2"])
        let inputs = try comm.streams.enumerated().map { r, s in try s.tensor(values(6, Float(r * 10)), shape: [2, 3]) }

        let sums = try comm.allReduceSum(inputs)
        var expected = [Float](repeating: 0, count: 6)
        for r in 0..<3 { for i in 0..<6 { expected[i] += Float(r * 10) + Float(i) * 0.25 } }
        for (r, t) in sums.enumerated() {
            #expect(t.backend === comm.streams[r] && t.shape == [2, 3])
            let sum = try t.toFloats()
            #expect(sum == expected)
        }

        let gathered = try comm.allGather(inputs)
        for (r, t) in gathered.enumerated() {
            #expect(t.backend === comm.streams[r] && t.shape == [3, 2, 3])
            let all = try t.toFloats()
            let stacked: [Float] = values(6, 0) + values(6, 10) + values(6, 20)
            #expect(all == stacked)
        }

        // chunks[i][j] = 100 i + j, of a shape of its own per pair.
        let chunks = try (0..<3).map { i in
            try (0..<3).map { j in try comm.streams[i].tensor([Float](repeating: Float(100 * i + j), count: j + 1), shape: [j + 1]) }
        }
        let exchanged = try comm.allToAll(chunks)
        for j in 0..<3 {
            for i in 0..<3 {
                #expect(exchanged[j][i].backend === comm.streams[j])
                let got = try exchanged[j][i].toFloats()
                #expect(got == [Float](repeating: Float(100 * i + j), count: j + 1))
            }
        }

        let sent = try comm.send(inputs[2], from: 2, to: 0)
        let sentValues = try sent.toFloats()
        #expect(sent.backend === comm.streams[0] && sentValues == values(6, 20))
        let kept = try comm.send(inputs[1], from: 1, to: 1)
        #expect(kept === inputs[1])
        let bf16 = try comm.allReduceSum(try comm.streams.map { try $0.tensor([1.5, -2], shape: [2], dtype: .bf16) })
        let bf16Values = try bf16[2].toFloats()
        #expect(bf16[2].dtype == .bf16 && bf16Values == [4.5, -6])
    }

    @Test func badRanksAndTensorsAreClearErrors() throws {
        let cpu = CPUDevice(ordinal: 7)
        #expect(throws: ReelError.input("CPU communicator: ranks 0 and 1 are both on cpu:7; each rank needs a device of its own")) {
            _ = try CPUCommunicator(streams: [try cpu.makeStream(), try cpu.makeStream()])
        }
        #expect(throws: ReelError.self) { _ = try CPUCommunicator(ranks: 0) }
        let comm = try CPUCommunicator(ranks: 2)
        let onRank0 = try comm.streams[0].tensor([1, 2], shape: [2])
        do {
            _ = try comm.allReduceSum([onRank0, onRank0])
            Issue.record("rank 1 took rank 0's tensor")
        } catch let ReelError.invalidArgument(_, message) {
            #expect(message.contains("rank 1's tensor lives on cpu:0"))
        }
        #expect(throws: ReelError.self) { _ = try comm.allGather([onRank0]) }
        let onRank1 = try comm.streams[1].tensor([1, 2, 3], shape: [3])
        #expect(throws: ReelError.self) { _ = try comm.allReduceSum([onRank0, onRank1]) }
    }

    /// Several CPU devices are devices of their own: a tensor crosses between them by a copy.
    @Test func cpuDevicesAreDistinct() throws {
        let a = CPUDevice(ordinal: 0), b = CPUDevice(ordinal: 0)
        #expect(!a.isSame(as: b) && !a.isSame(as: CPUDevice.shared) && a.name == "cpu:0")
        #expect(CPUBackend().device.isSame(as: CPUDevice.shared) && CPUBackend().name == "cpu")
        let sa = try a.makeStream(), sb = try b.makeStream()
        #expect(sa.device.isSame(as: a) && sa.name == "cpu:0")
        let t = try sa.tensor([1, 2, 3], shape: [3])
        let moved = try t.handedOver(to: sb, ready: try sa.recordEvent())
        let movedValues = try moved.toFloats()
        #expect(moved.backend === sb && moved.storage !== t.storage && movedValues == [1, 2, 3])
    }
}

/// The Wan DiT spread over N in-process CPU devices by sequence parallelism equals the one-device model
/// bit for bit: the same velocities and, head for head, the same cache, over passes that fill the ring, wrap
/// it, recompute it (a recache) and generate again. Reel's own GEMM rounds a row the same whatever the row
/// count, so the comparison does not depend on a BLAS's choice of kernel by shape.
@Suite struct SequenceParallelTests {
    /// 12 heads (as Wan 1.3B) of size 8: 2, 3, 4 and 6 ranks divide them.
    static let config = WanDiTConfig(dim: 96, ffnDim: 128, heads: 12, layers: 2, textDim: 16)

    func models(ranks: Int, seed: UInt64 = 4) throws -> (single: WanDiT, parallel: WanDiT, backend: CPUBackend) {
        let backend = CPUBackend(gemm: .own)
        let weights = try WanDiT.randomWeights(Self.config, on: backend, seed: seed)
        let single = try WanDiT.load(from: weights, heads: 12, backend: backend).withTextLength(8)
        let comm = try CPUCommunicator(ranks: ranks, gemm: .own)
        let parallel = try WanDiT.loadSequenceParallel(from: weights, heads: 12, communicator: comm).withTextLength(8)
        return (single, parallel, backend)
    }

    @Test func tokenShardsPadEachFrameToAMultipleOfTheRanks() {
        #expect(TokenShards(tokensPerFrame: 1560, ranks: 4).perRank == 390)      // 480x832 on 4 GPUs: no padding
        #expect(TokenShards(tokensPerFrame: 1560, ranks: 4).padded == 1560)
        #expect(TokenShards(tokensPerFrame: 6, ranks: 4).perRank == 2)
        #expect(TokenShards(tokensPerFrame: 6, ranks: 4).padded == 8)
        #expect(TokenShards(tokensPerFrame: 64, ranks: 3).padded == 66)
    }

    @Test(arguments: [1, 2, 3, 4])
    func parallelPassesEqualTheOneDeviceModel(ranks: Int) throws {
        let (single, parallel, backend) = try models(ranks: ranks)
        #expect(parallel.parallelism?.replicas.count == ranks && parallel.withTextLength(8).parallelism != nil)
        let embedding = try backend.randomNormal([5, Self.config.textDim], seed: 9, offset: 0, dtype: .f32)
        let (p1, p2) = (try single.encodePrompt(embedding), try parallel.encodePrompt(embedding))
        // 2 x 3 tokens per frame: 4 ranks hold 2 rows each, one of them padding.
        let c1 = try single.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        let c2 = try parallel.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        #expect(c2.shards.count == ranks && c2.byteCount == c1.byteCount)
        let latents = try backend.randomNormal([9, 4, 6, 16], seed: 11, offset: 0, dtype: .f32)
        let block = try backend.slice(latents, axis: 0, start: 0, length: 3)
        // (start, latents, timestep, needs output): fill the ring; wrap it; recompute as a recache; a block.
        let passes: [(Int, Tensor, Float, Bool)] = [(0, latents, 900, true), (9, latents, 500, true),
                                                    (9, latents, 0, false), (18, block, 250, true)]
        for (start, x, t, needsOutput) in passes {
            let a = try single.forward(x, timestep: t, prompt: p1, cache: c1, access: .init(startFrame: start, needsOutput: needsOutput))
            let b = try parallel.forward(x, timestep: t, prompt: p2, cache: c2, access: .init(startFrame: start, needsOutput: needsOutput))
            #expect((a == nil) == !needsOutput && (b == nil) == !needsOutput)
            if let a, let b {
                #expect(b.backend === parallel.backend && b.shape == a.shape)
                let (va, vb) = (try a.toFloats(), try b.toFloats())
                #expect(vb == va, "\(ranks) ranks, pass at frame \(start)")
            }
            let perRank = Self.config.heads / ranks
            for layer in 0..<Self.config.layers {
                for (r, shard) in c2.shards.enumerated() {
                    let heads = { (t: Tensor) throws -> [Float] in
                        try backend.slice(t, axis: 2, start: r * perRank, length: perRank).toFloats()
                    }
                    let (k, v) = (try shard.keys[layer].toFloats(), try shard.values[layer].toFloats())
                    let (k1, v1) = (try heads(c1.keys[layer]), try heads(c1.values[layer]))
                    #expect(k == k1, "keys, layer \(layer), rank \(r)")
                    #expect(v == v1, "values, layer \(layer), rank \(r)")
                }
            }
        }
        #expect(c2.endFrame == c1.endFrame)
    }

    @Test func headsThatDoNotSplitAndMisplacedPartsAreClearErrors() throws {
        let backend = CPUBackend(gemm: .own)
        let weights = try WanDiT.randomWeights(Self.config, on: backend, seed: 1)
        do {
            _ = try WanDiT.loadSequenceParallel(from: weights, heads: 12, communicator: try CPUCommunicator(ranks: 5))
            Issue.record("12 heads split over 5 ranks")
        } catch let ReelError.input(message) {
            #expect(message.contains("12 heads do not divide by 5 ranks") && message.contains("1, 2, 3, 4, 6, 12"))
        }
        let comm = try CPUCommunicator(ranks: 2)
        let onOneDevice = try WanDiT.load(from: weights, heads: 12, backend: backend)
        let rank1 = try WanDiT.load(from: weights, heads: 12, backend: comm.streams[1])
        do {
            _ = try WanDiT.sequenceParallel([onOneDevice, rank1], communicator: comm)
            Issue.record("a replica on another device was accepted")
        } catch let ReelError.input(message) {
            #expect(message.contains("replica 0 runs on cpu; rank 0 of cpu x 2 is cpu:0"))
        }
        #expect(throws: ReelError.self) { _ = try WanDiT.sequenceParallel([rank1], communicator: comm) }

        // A cache or a prompt of the one-device model is refused by the parallel one.
        let (single, parallel, _) = try models(ranks: 2)
        let embedding = try backend.randomNormal([5, Self.config.textDim], seed: 9, offset: 0, dtype: .f32)
        let latents = try backend.randomNormal([3, 4, 6, 16], seed: 11, offset: 0, dtype: .f32)
        let singleCache = try single.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        #expect(throws: ReelError.self) {
            _ = try parallel.forward(latents, timestep: 500, prompt: try parallel.encodePrompt(embedding), cache: singleCache,
                                     access: .init(startFrame: 0))
        }
        let cache = try parallel.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        #expect(throws: ReelError.self) {
            _ = try parallel.forward(latents, timestep: 500, prompt: try single.encodePrompt(embedding), cache: cache,
                                     access: .init(startFrame: 0))
        }
    }
}
