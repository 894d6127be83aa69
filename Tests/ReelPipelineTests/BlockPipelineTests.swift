import Foundation
import Testing
import ReelCore
import ReelCPU
import ReelModels
@testable import ReelPipeline

/// StreamDiffusionV2's block pipelining over Reel's stream batch, on in-process CPU devices (each holding only
/// its range of a random DiT's layers and their cache, a thread each): with one stream batch per device it makes
/// its one-device emulation (`StreamBatchGenerator(chains: N)`) bit for bit, and not the one-device stream batch
/// (negative control: the interleaving changes the schedule); with one chain it is the one-device stream batch
/// itself. Bad ranges and devices are clear errors; the balanced split is checked on made-up latencies. Reel's own
/// GEMM rounds a row the same on every device, so the comparisons do not depend on a BLAS's kernel choice.
@Suite struct BlockPipelineTests {
    static let config = WanDiTConfig(dim: 96, ffnDim: 128, heads: 12, layers: 4, textDim: 16)
    static let latent = (h: 4, w: 6)
    /// StreamDiffusionV2's 4-step schedule (4 levels, a 6-frame cache with a 3-frame sink and its refresh) with the
    /// RoPE reset early, so a run crosses it.
    static let schedule = StreamV2VSchedule(denoisingSteps: StreamV2VSchedule.stepLadder, ropeResetFrame: 10)

    struct Setup {
        let weights: InMemoryTensors
        let backends: [CPUBackend]
        let embedding: Tensor
        let inputs: [Tensor]          // the first chunk (2 frames), then one frame a call, on device 0
    }

    static func setup(devices: Int, calls: Int) throws -> Setup {
        let backends = (0..<devices).map { CPUBackend(gemm: .own, device: CPUDevice(ordinal: $0)) }
        let weights = try WanDiT.randomWeights(config, on: backends[0], seed: 21)
        let be = backends[0]
        let inputs = try [be.randomNormal([2, latent.h, latent.w, 16], seed: 3, offset: 0, dtype: .f32)]
            + (1...calls).map { try be.randomNormal([1, latent.h, latent.w, 16], seed: 100 + UInt64($0), offset: 0, dtype: .f32) }
        return Setup(weights: weights, backends: backends, embedding: try be.randomNormal([5, 16], seed: 1, offset: 0, dtype: .f32),
                     inputs: inputs)
    }

    /// Motion per call: varied, so the adaptive first step changes from call to call.
    static func motion(_ k: Int) -> Double { [0.0, 0.3, 0.05, 0.6, 0.2][k % 5] }

    /// One device: the blocks finished, in order, with `chains` interleaved stream batches.
    func oneDevice(_ s: Setup, chains: Int) throws -> [(Int, [Float])] {
        let model = try WanDiT.load(from: s.weights, heads: 12, backend: s.backends[0]).withTextLength(8)
        let g = try StreamBatchGenerator(model: model, prompt: try model.encodePrompt(s.embedding),
                                         latentHeight: Self.latent.h, latentWidth: Self.latent.w, schedule: Self.schedule,
                                         noise: PhiloxStreamNoise(seed: 9), chains: chains)
        var out = [(0, try g.start(latents: s.inputs[0]).latents.toFloats())]
        for k in 1..<s.inputs.count {
            if let b = try g.push(latent: s.inputs[k], motion: Self.motion(k)) { out.append((b.index, try b.latents.toFloats())) }
        }
        return out
    }

    /// The block pipeline over the setup's devices with `ranges`.
    func pipelined(_ s: Setup, ranges: [Range<Int>], chains: Int? = nil) throws -> [(Int, [Float])] {
        let stages = try zip(ranges, s.backends).map {
            try WanDiT.loadLayers($0, from: s.weights, heads: 12, backend: $1).withTextLength(8)
        }
        #expect(stages.map(\.config.layers) == ranges.map(\.count), "each device holds only its layers")
        let g = try BlockPipelinedStreamBatch(stages: stages, ranges: ranges, promptEmbedding: s.embedding,
                                              latentHeight: Self.latent.h, latentWidth: Self.latent.w,
                                              schedule: Self.schedule, noise: PhiloxStreamNoise(seed: 9), chains: chains)
        defer { g.stop() }
        #expect(g.caches.map(\.layers) == ranges.map(\.count), "each device caches only its layers")
        var out = [(0, try g.start(latents: s.inputs[0]).latents.toFloats())]
        for k in 1..<s.inputs.count {
            for b in try g.push(latent: s.inputs[k], motion: Self.motion(k)) {
                #expect(b.latents.backend === s.backends[ranges.count - 1], "the last stage's device holds the blocks")
                out.append((b.index, try b.latents.toFloats()))
            }
        }
        for b in try g.flush() { out.append((b.index, try b.latents.toFloats())) }
        return out
    }

    func same(_ a: [(Int, [Float])], _ b: [(Int, [Float])]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    @Test func twoDevicesMatchTheEmulationNotTheOneDeviceSchedule() throws {
        let s = try Self.setup(devices: 2, calls: 14)
        let piped = try pipelined(s, ranges: [0..<3, 3..<4])
        let emulated = try oneDevice(s, chains: 2)
        // Level i of call k holds block k - 2i: the last level (3) of call 14 holds block 8.
        #expect(piped.map(\.0) == Array(0...8))
        #expect(same(piped, emulated), "the pipeline makes its one-device emulation bit for bit")
        let plain = try oneDevice(s, chains: 1)
        #expect(plain.map(\.0) == Array(0...11))
        let shared = zip(piped, plain).filter { $0.0.0 == $0.1.0 }
        #expect(shared.count == 9)
        #expect(shared[0].0.1 == shared[0].1.1, "the first chunk is denoised alike")
        #expect(shared.dropFirst().allSatisfy { $0.0.1 != $0.1.1 },
                "interleaved stream batches change what each level sees (negative control)")
    }

    @Test func threeDevicesMatchTheEmulation() throws {
        let s = try Self.setup(devices: 3, calls: 15)
        let piped = try pipelined(s, ranges: try BlockPipelineRanges.even(layers: 4, stages: 3))
        #expect(piped.map(\.0) == Array(0...6))
        #expect(same(piped, try oneDevice(s, chains: 3)))
    }

    @Test func oneChainIsTheOneDeviceStreamBatch() throws {
        let s = try Self.setup(devices: 2, calls: 8)
        let piped = try pipelined(s, ranges: [0..<1, 1..<4], chains: 1)
        #expect(piped.map(\.0) == Array(0...5))
        #expect(same(piped, try oneDevice(s, chains: 1)))
    }

    @Test func rangesSplitAndBalance() throws {
        #expect(try BlockPipelineRanges.even(layers: 30, stages: 4) == [0..<8, 8..<16, 16..<23, 23..<30])
        #expect(try BlockPipelineRanges.even(layers: 4, stages: 1) == [0..<4])
        // Even layers: the even split; a slow layer gets a stage nearly to itself; extras move the cuts.
        #expect(try BlockPipelineRanges.balanced(layerSeconds: Array(repeating: 1, count: 8), stages: 2) == [0..<4, 4..<8])
        #expect(try BlockPipelineRanges.balanced(layerSeconds: [1, 1, 6, 1, 1, 1], stages: 3) == [0..<2, 2..<3, 3..<6])
        #expect(try BlockPipelineRanges.balanced(layerSeconds: Array(repeating: 1, count: 8), stages: 2,
                                                 stageExtra: [0, 2]) == [0..<5, 5..<8])
        #expect(throws: ReelError.self) { try BlockPipelineRanges.even(layers: 2, stages: 3) }
        #expect(throws: ReelError.self) { try BlockPipelineRanges.balanced(layerSeconds: [1, .nan], stages: 2) }
        #expect(BlockPipelineRanges.problem([0..<2, 2..<4], layers: 4, devices: 2) == nil)
        #expect(BlockPipelineRanges.problem([0..<2, 3..<4], layers: 4, devices: 2)?.contains("not contiguous") == true)
        #expect(BlockPipelineRanges.problem([0..<2, 2..<3], layers: 4, devices: 2)?.contains("cover layers 0..<3") == true)
        #expect(BlockPipelineRanges.problem([0..<4], layers: 4, devices: 2)?.contains("one per device") == true)
        #expect(BlockPipelineRanges.problem([0..<0, 0..<4], layers: 4, devices: 2)?.contains("at least one layer") == true)
    }

    @Test func measuredLatenciesGiveRanges() throws {
        let s = try Self.setup(devices: 1, calls: 1)
        let model = try WanDiT.load(from: s.weights, heads: 12, backend: s.backends[0]).withTextLength(8)
        let seconds = try BlockPipelineRanges.measuredLayerSeconds(model: model, prompt: try model.encodePrompt(s.embedding),
                                                                   latentHeight: Self.latent.h, latentWidth: Self.latent.w,
                                                                   schedule: Self.schedule, repeats: 2)
        #expect(seconds.count == 4 && seconds.allSatisfy { $0.isFinite && $0 >= 0 })
        let ranges = try BlockPipelineRanges.balanced(layerSeconds: seconds, stages: 2)
        #expect(BlockPipelineRanges.problem(ranges, layers: 4, devices: 2) == nil)
    }

    @Test func badRangesAndDevicesAreClearErrors() throws {
        let s = try Self.setup(devices: 2, calls: 1)
        func make(_ stages: [WanDiT], _ ranges: [Range<Int>]) throws {
            _ = try BlockPipelinedStreamBatch(stages: stages, ranges: ranges, promptEmbedding: s.embedding,
                                              latentHeight: Self.latent.h, latentWidth: Self.latent.w,
                                              schedule: Self.schedule, noise: PhiloxStreamNoise(seed: 9))
        }
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "" } catch { return "\(error)" }
        }
        let a = try WanDiT.loadLayers(0..<2, from: s.weights, heads: 12, backend: s.backends[0])
        let b = try WanDiT.loadLayers(2..<4, from: s.weights, heads: 12, backend: s.backends[1])
        let bOnZero = try WanDiT.loadLayers(2..<4, from: s.weights, heads: 12, backend: s.backends[0])
        #expect(message { try make([a, bOnZero], [0..<2, 2..<4]) }.contains("both on"))
        #expect(message { try make([a, b], [0..<3, 3..<4]) }.contains("holds 2 layers"))
        #expect(message { try make([a, b], [0..<2, 3..<4]) }.contains("not contiguous"))
        #expect(message { try make([a], [0..<2, 2..<4]) }.contains("one per device"))
        #expect(message { _ = try WanDiT.loadLayers(2..<5, from: s.weights, backend: s.backends[0]) }.contains("not within"))
        #expect(message {
            _ = try BlockPipelinedStreamBatch.loadStages(from: s.weights, devices: s.backends, ranges: [0..<1, 2..<4])
        }.contains("not contiguous"))
        #expect(message { _ = try BlockPipelinedStreamBatch.loadStages(from: s.weights, devices: [s.backends[0], s.backends[0]]) }
            .contains("both on"))
        let loaded = try BlockPipelinedStreamBatch.loadStages(from: s.weights, devices: s.backends)
        #expect(loaded.ranges == [0..<2, 2..<4])
    }
}
