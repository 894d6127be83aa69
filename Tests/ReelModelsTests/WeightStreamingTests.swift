import Foundation
import ReelCore
import ReelCPU
@testable import ReelModels
import ReelTestSupport
import Testing

/// Weight streaming (`WanDiT.streamingBlocks`, `--gpu-memory`): a DiT whose blocks pass through a ring of slots
/// equals the all-resident model bit for bit (the same weights, bytes copied, the same ops in the same order on
/// the same backend), over passes that fill the KV cache, wrap it, recache it and generate again; the prompt's
/// cross-attention K/V come through the slots too. Reel's own GEMM (`.own`), so no BLAS kernel choice enters.
@Suite struct WeightStreamingTests {
    static let config = WanDiTConfig(dim: 96, ffnDim: 128, heads: 12, layers: 4, textDim: 16)

    /// Runs the same passes on `a` and `b` and expects the same velocities and caches.
    func expectSamePasses(_ a: WanDiT, _ b: WanDiT, backend: CPUBackend, label: String) throws {
        let embedding = try backend.randomNormal([5, Self.config.textDim], seed: 9, offset: 0, dtype: .f32)
        let (p1, p2) = (try a.encodePrompt(embedding), try b.encodePrompt(embedding))
        let c1 = try a.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        let c2 = try b.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        let latents = try backend.randomNormal([9, 4, 6, 16], seed: 11, offset: 0, dtype: .f32)
        let block = try backend.slice(latents, axis: 0, start: 0, length: 3)
        // (start, latents, timestep, needs output): fill the ring; wrap it; recompute as a recache; two blocks.
        let passes: [(Int, Tensor, Float, Bool)] = [(0, latents, 900, true), (9, latents, 500, true),
                                                    (9, latents, 0, false), (18, block, 250, true), (21, block, 0, true)]
        for (start, x, t, needsOutput) in passes {
            let va = try a.forward(x, timestep: t, prompt: p1, cache: c1, access: .init(startFrame: start, needsOutput: needsOutput))
            let vb = try b.forward(x, timestep: t, prompt: p2, cache: c2, access: .init(startFrame: start, needsOutput: needsOutput))
            #expect((va == nil) == (vb == nil))
            if let va, let vb { #expect(try vb.toFloats() == va.toFloats(), "\(label): pass at frame \(start)") }
            for layer in 0..<Self.config.layers {
                #expect(try c2.keys[layer].toFloats() == c1.keys[layer].toFloats(), "\(label): keys, layer \(layer)")
                #expect(try c2.values[layer].toFloats() == c1.values[layer].toFloats(), "\(label): values, layer \(layer)")
            }
        }
    }

    @Test(arguments: [(0, 2), (0, 3), (1, 2), (3, 2), (2, 1)])
    func streamedBlocksEqualResidentOnes(first: Int, slots: Int) async throws {
        try await offThePool {
            let backend = CPUBackend(gemm: .own)
            let resident = try WanDiT.load(from: WanDiT.randomWeights(Self.config, on: backend, seed: 4), heads: 12,
                                           backend: backend).withTextLength(8)
            let streamed = try resident.streamingBlocks(from: first, slots: slots)
            let stats = try #require(streamed.weightStreaming)
            #expect(stats.layers == 4 - first && stats.firstLayer == first && stats.slots == min(slots, 4 - first))
            let blockBytes = WanDiT.blockParameters(Self.config) * 4
            #expect(stats.bytesPerPass >= (4 - first) * blockBytes
                    && stats.bytesPerPass < (4 - first) * (blockBytes + 40 * BlockStreamer.alignment))
            try expectSamePasses(resident, streamed, backend: backend, label: "blocks \(first)... through \(slots) slots")
            // 1 prompt + 5 passes, each every streamed block once, and the uploads issued ahead for the next pass.
            let after = try #require(streamed.weightStreaming)
            #expect(after.bytesUploaded >= 6 * stats.bytesPerPass)
            #expect(after.bytesUploaded <= 7 * stats.bytesPerPass)
        }
    }

    @Test(arguments: [QuantizedFormat.fp8, .int8])
    func quantizedBlocksStreamToo(_ format: QuantizedFormat) async throws {
        try await offThePool {
            let backend = CPUBackend(gemm: .own)
            let quantization = LinearQuantization(format: format, layers: .allLinears)
            let resident = try WanDiT.load(from: WanDiT.randomWeights(Self.config, on: backend, seed: 5), heads: 12,
                                           backend: backend).withTextLength(8).quantized(quantization)
            let streamed = try resident.streamingBlocks(from: 1, slots: 2)
            #expect(streamed.quantization == quantization)
            try expectSamePasses(resident, streamed, backend: backend, label: format.name)
            #expect(throws: ReelError.self) { _ = try streamed.quantized(.init(format: format, layers: .feedForward)) }
        }
    }

    /// A pass that ends early (an error inside a block) leaves the ring in a state the next pass recovers from.
    @Test func aPassCutShortStartsTheRingOver() async throws {
        try await offThePool {
            let backend = CPUBackend(gemm: .own)
            let resident = try WanDiT.load(from: WanDiT.randomWeights(Self.config, on: backend, seed: 6), heads: 12,
                                           backend: backend).withTextLength(8)
            let streamed = try resident.streamingBlocks(from: 0, slots: 2)
            struct Stop: Error {}
            #expect(throws: Stop.self) { try streamed.forEachBlock { i, _ in if i == 2 { throw Stop() } } }
            try expectSamePasses(resident, streamed, backend: backend, label: "after a cut pass")
        }
    }

    /// `WanDiT.load(streaming:)` binds the streamed blocks on a host backend and copies them straight into host
    /// buffers: the model equals one loaded onto the device, quantized and then streamed, bit for bit, and the
    /// device holds only the resident blocks, the embeddings and head, and the slots, never a streamed block.
    @Test(arguments: [nil, LinearQuantization(format: .fp8, layers: .allLinears)])
    func blocksLoadStraightIntoHostMemory(_ quantization: LinearQuantization?) async throws {
        try await offThePool {
            let source = try WanDiT.randomWeights(Self.config, on: CPUBackend(), seed: 8)
            let backend = CPUBackend(gemm: .own)
            var reference = try WanDiT.load(from: source, heads: 12, backend: backend).withTextLength(8)
            if let quantization { reference = try reference.quantized(quantization) }
            reference = try reference.streamingBlocks(from: 1, slots: 2)
            let budget = MemoryBudget(cap: 1 << 40, device: "cpu")
            let device = CPUBackend(gemm: .own, memoryBudget: budget)
            let streaming = BlockStreaming(first: 1, slots: 2, copyStream: device, host: CPUBackend(gemm: .own))
            let loaded = try WanDiT.load(from: source, heads: 12, backend: device, quantization: quantization,
                                         streaming: streaming).withTextLength(8)
            #expect(loaded.quantization == quantization)
            let stats = try #require(loaded.weightStreaming)
            #expect(stats.firstLayer == 1 && stats.layers == 3 && stats.slots == 2)
            // The device: the embeddings, the head and block 0 (quantized or not), and the slots; while loading at
            // most one block more (block 0 before its quantization), never the three streamed blocks.
            let all = WanDiT.weightShapes(Self.config).reduce(0) { $0 + $1.1.count } * 4
            let block = WanDiT.blockParameters(Self.config) * 4
            #expect(budget.inUse <= stats.slotBytes + all - 3 * block)
            #expect(budget.peak <= budget.inUse + block, "peak \(budget.peak), in use \(budget.inUse)")
            try expectSamePasses(reference, loaded, backend: backend, label: "loaded streaming, \(String(describing: quantization))")
        }
    }

    /// The slots are the only device memory streaming adds: under a cap that holds the resident blocks and two
    /// slots, the model is made and runs; the host copies do not count.
    @Test func slotsCountAgainstTheCapAndHostCopiesDoNot() async throws {
        try await offThePool {
            let budget = MemoryBudget(cap: 1 << 40, device: "cpu")
            let backend = CPUBackend(gemm: .own, memoryBudget: budget)
            let before = budget.inUse
            let model = try WanDiT.load(from: WanDiT.randomWeights(Self.config, on: backend, seed: 7), heads: 12,
                                        backend: backend)
            _ = model
            let weights = budget.inUse - before
            let streamed = try model.streamingBlocks(from: 0, slots: 2)
            let slots = try #require(streamed.weightStreaming).slotBytes
            #expect(budget.inUse - before == weights + slots)
            #expect(slots < weights / 2)
        }
    }
}

/// The KV cache in host memory (`WanDiT.hostKVCache`, `--gpu-memory`'s step after every block streams): each
/// layer's K/V uploaded into one of two device scratches before the layer and its new rows written back after.
@Suite struct HostKVCacheTests {
    /// `hostFrom`: layers before it keep their K/V on the device (`ResidencyPlan.kvDeviceLayers`).
    @Test(arguments: [(0, 0), (2, 0), (0, 1), (2, 3)])
    func hostCacheEqualsDeviceCacheBitForBit(chunkFrames: Int, hostFrom: Int) async throws {
        try await offThePool {
            let backend = CPUBackend(gemm: .own)
            let resident = try WanDiT.load(from: WanDiT.randomWeights(WeightStreamingTests.config, on: backend, seed: 4),
                                           heads: 12, backend: backend).withTextLength(8)
            resident.chunkFrames = chunkFrames
            let streamed = try resident.streamingBlocks(from: 0, slots: 2)
            streamed.hostKVCache = try backend.makeStream() as? any HostToDeviceCopying
            streamed.hostKVCacheFrom = hostFrom
            streamed.chunkFrames = chunkFrames
            // Passes that fill, wrap and recache; the host cache read after them equals the device one.
            try WeightStreamingTests().expectSamePasses(resident, streamed, backend: backend,
                                                         label: "host KV cache from layer \(hostFrom), chunks of \(chunkFrames)")
        }
    }

    /// An FP8 cache (codes and their scales) in host memory equals the FP8 cache on the device bit for bit.
    @Test(arguments: [0, 2])
    func fp8HostCacheEqualsFP8DeviceCache(hostFrom: Int) async throws {
        try await offThePool {
            let backend = CPUBackend(gemm: .own)
            let resident = try WanDiT.load(from: WanDiT.randomWeights(WeightStreamingTests.config, on: backend, seed: 4),
                                           heads: 12, backend: backend).withTextLength(8).withKVCache(.fp8)
            let streamed = try resident.streamingBlocks(from: 0, slots: 2)
            streamed.hostKVCache = try backend.makeStream() as? any HostToDeviceCopying
            streamed.hostKVCacheFrom = hostFrom
            #expect(try streamed.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6).host != nil)
            try WeightStreamingTests().expectSamePasses(resident, streamed, backend: backend,
                                                         label: "FP8 host KV cache from layer \(hostFrom)")
        }
    }

    /// A pass uploads only the attended rows it does not write, and writes back only the rows it wrote
    /// (`WanKVCache.hostTraffic`, which `reel bench` reports).
    @Test func aPassMovesOnlyTheRowsItNeeds() throws {
        let backend = CPUBackend(gemm: .own)
        let c = WeightStreamingTests.config
        let model = try WanDiT.load(from: WanDiT.randomWeights(c, on: backend, seed: 4), heads: 12, backend: backend)
            .withTextLength(8)
        model.hostKVCache = try backend.makeStream() as? any HostToDeviceCopying
        let cache = try model.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        let prompt = try model.encodePrompt(try backend.randomNormal([5, 16], seed: 9, offset: 0, dtype: .f32))
        let latents = try backend.randomNormal([3, 4, 6, 16], seed: 11, offset: 0, dtype: .f32)
        let frameBytes = 2 * c.layers * 6 * c.dim * 4             // K and V of one frame in every layer, f32
        _ = try model.forward(latents, timestep: 900, prompt: prompt, cache: cache, access: .init(startFrame: 0))
        // Frames 0-2: it attends only to what it writes.
        #expect(cache.hostTraffic?.uploaded == 0 && cache.hostTraffic?.writtenBack == 3 * frameBytes)
        _ = try model.forward(latents, timestep: 900, prompt: prompt, cache: cache, access: .init(startFrame: 3))
        // Frames 3-5 attend to 0-5: frames 0-2 come up.
        #expect(cache.hostTraffic?.uploaded == 3 * frameBytes && cache.hostTraffic?.writtenBack == 6 * frameBytes)
    }

    /// Only the two scratches count against the cap; the cache's layers live in host memory.
    @Test func onlyTheScratchesCountAgainstTheCap() throws {
        let budget = MemoryBudget(cap: 1 << 40, device: "cpu")
        let backend = CPUBackend(gemm: .own, memoryBudget: budget)
        let c = WeightStreamingTests.config
        let before = budget.inUse
        let device = try WanKVCache(backend: backend, layers: c.layers, tokensPerFrame: 6, heads: c.heads,
                                    headDim: c.headDim, sinkFrames: 3, windowFrames: 6, dtype: .f32)
        let onDevice = budget.inUse - before
        let host = try WanKVCache(backend: backend, layers: c.layers, tokensPerFrame: 6, heads: c.heads,
                                  headDim: c.headDim, sinkFrames: 3, windowFrames: 6, dtype: .f32,
                                  hostCopier: try backend.makeStream() as? any HostToDeviceCopying)
        #expect(budget.inUse - before - onDevice == 2 * onDevice / c.layers)
        #expect(host.byteCount == 2 * device.byteCount / c.layers)
        // Outside beginLayer/endLayer a layer of the host cache is not readable by a pass.
        #expect(throws: ReelError.self) { _ = try host.live(0) }
        // Layers 0 and 1 kept on the device: they count too, and are readable as a device cache's are.
        let inUse = budget.inUse
        let part = try WanKVCache(backend: backend, layers: c.layers, tokensPerFrame: 6, heads: c.heads,
                                  headDim: c.headDim, sinkFrames: 3, windowFrames: 6, dtype: .f32,
                                  hostCopier: try backend.makeStream() as? any HostToDeviceCopying, hostFrom: 2)
        #expect(budget.inUse - inUse == 4 * onDevice / c.layers)
        #expect(part.byteCount == 4 * device.byteCount / c.layers)
        _ = try part.live(1)
        #expect(throws: ReelError.self) { _ = try part.live(2) }
    }

    /// Negative control: without the write-back the host cache keeps zeros and the next pass differs.
    @Test func withoutWriteBackTheCacheDiffers() throws {
        let backend = CPUBackend(gemm: .own)
        let model = try WanDiT.load(from: WanDiT.randomWeights(WeightStreamingTests.config, on: backend, seed: 4),
                                    heads: 12, backend: backend).withTextLength(8)
        model.hostKVCache = try backend.makeStream() as? any HostToDeviceCopying
        let cache = try model.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        let prompt = try model.encodePrompt(try backend.randomNormal([5, 16], seed: 9, offset: 0, dtype: .f32))
        let latents = try backend.randomNormal([3, 4, 6, 16], seed: 11, offset: 0, dtype: .f32)
        _ = try model.forward(latents, timestep: 900, prompt: prompt, cache: cache, access: .init(startFrame: 0, needsOutput: true))
        #expect(try cache.keys[0].toFloats().contains { $0 != 0 })
        // The same layer used without endLayer: its rows never reach host memory.
        let fresh = try model.makeCache(tokensPerFrame: 6, sinkFrames: 3, windowFrames: 6)
        let plan = fresh.plan(startFrame: 0, frames: 3)
        try fresh.beginLayer(0)
        let (k, _) = try fresh.live(0)
        try backend.fill(k, with: 1)
        #expect(try fresh.keys[0].toFloats().allSatisfy { $0 == 0 })
        try fresh.endLayer(0, plan: plan)
        #expect(try fresh.keys[0].toFloats().contains { $0 == 1 })
    }
}
