import Foundation
import ReelCore
import ReelModels
import ReelPipeline
import Testing

/// `--gpu-memory`'s placement: everything on the device when it fits, the text encoder to the CPU first, then DiT
/// blocks streamed from the last back, and a refusal naming what the smallest placement needs.
@Suite struct ResidencyPlanTests {
    static func estimate(_ c: WanDiTConfig, text: Bool = true, quantization: LinearQuantization? = nil) -> MemoryEstimate {
        let ditParameters = WanDiT.weightShapes(c).reduce(0) { $0 + $1.1.count }
        let vaeParameters = WanVAEDecoder.weightShapes(.wan21).reduce(0) { $0 + $1.1.count }
        return MemoryEstimate.streaming(dit: c, ditParameters: ditParameters,
                                        textEncoderParameters: text ? UMT5Config.xxl.parameterCount : nil,
                                        decoder: .wanVAE(.wan21, parameters: vaeParameters),
                                        geometry: BlockGeometry(width: 832, height: 480), quantization: quantization)
    }

    @Test func blockBytesAreTheBlocksShareOfTheWeights() {
        let c = WanDiTConfig.wan1_3B
        let all = WanDiT.weightShapes(c).reduce(0) { $0 + $1.1.count }
        let blocks = WanDiT.blockParameters(c) * c.layers
        #expect(blocks < all && all - blocks < all / 20)      // embeddings and head: a few percent
        #expect(ResidencyPlan.blockBytes(c, dtype: .bf16, quantization: nil) == Double(WanDiT.blockParameters(c) * 2))
        for format in [QuantizedFormat.fp8, .int8] {
            #expect(ResidencyPlan.blockBytes(c, dtype: .bf16, quantization: .init(format: format, layers: .feedForward))
                    == Double(WanDiT.blockParameters(c) * 2 - 2 * c.dim * c.ffnDim + 4 * (c.ffnDim + c.dim)))
        }
    }

    @Test func everythingResidentWhenItFits() throws {
        let e = Self.estimate(.wan1_3B)
        let plan = try ResidencyPlan.make(estimate: e, dit: .wan1_3B, cap: Int(e.total) + 1)
        #expect(plan.residentLayers == 30 && plan.streamedLayers == 0 && plan.slots == 0 && plan.textEncoder == .device)
    }

    @Test func theTextEncoderLeavesBeforeAnyBlockStreams() throws {
        let e = Self.estimate(.wan1_3B)
        let plan = try ResidencyPlan.make(estimate: e, dit: .wan1_3B, cap: Int(e.withoutTextEncoder) + 1)
        #expect(plan.textEncoder == .cpu && plan.streamedLayers == 0)
    }

    @Test func blocksStreamFromTheLastBackUnderATighterCap() throws {
        let c = WanDiTConfig.wan1_3B, e = Self.estimate(c)
        let layer = ResidencyPlan.blockBytes(c, dtype: .bf16, quantization: nil)
        // Room for all but 5 blocks: 25 resident + 2 slots = 27 blocks' bytes.
        let cap = Int(e.withoutTextEncoder - 3 * layer) + 1
        let plan = try ResidencyPlan.make(estimate: e, dit: c, cap: cap)
        #expect(plan.textEncoder == .cpu && plan.residentLayers == 25 && plan.streamedLayers == 5 && plan.slots == 2)
        #expect(plan.deviceBytes <= Double(cap))
        #expect(plan.bytesPerPass == 5 * layer)
        let three = try ResidencyPlan.make(estimate: e, dit: c, cap: cap, slots: 3)
        #expect(three.residentLayers == 24 && three.slots == 3)
        #expect(plan.description.contains("blocks 0..<25 on the device, 5 streamed"))
    }

    @Test func the14BInFP8Fits24GBByStreaming() throws {
        let c = WanDiTConfig.wan14B, e = Self.estimate(c, quantization: .fp8(.feedForward))
        let plan = try ResidencyPlan.make(estimate: e, dit: c, cap: 24_000_000_000, quantization: .fp8(.feedForward))
        #expect(plan.streamedLayers > 0 && plan.residentLayers > 0 && plan.textEncoder == .cpu)
        #expect(plan.deviceBytes <= 24e9)
    }

    @Test func aCapBelowFullStreamingIsRefusedWithWhatItNeeds() throws {
        let c = WanDiTConfig.wan1_3B, e = Self.estimate(c)
        do {
            _ = try ResidencyPlan.make(estimate: e, dit: c, cap: 1_000_000_000)
            Issue.record("a 1 GB cap was accepted")
        } catch let error as ReelError {
            let message = "\(error)"
            #expect(message.contains("1.00 GB") && message.contains("KV cache") && message.contains("needs"))
            #expect(message.contains("raise --gpu-memory"))
        }
    }

    /// The step after every block streams: the KV cache in host memory, two scratches of one layer's K/V on the
    /// device; only when asked (a cache of the model's dtype), and the refusal below it says it was tried.
    @Test func theKVCacheMovesToHostMemoryAfterEveryBlockStreams() throws {
        let c = WanDiTConfig.wan1_3B, e = Self.estimate(c)
        let layer = ResidencyPlan.blockBytes(c, dtype: .bf16, quantization: nil)
        let kv = try #require(e.items.first { $0.name == "KV cache" }).bytes
        let allStreamed = e.withoutTextEncoder - Double(c.layers - 2) * layer
        let cap = Int(allStreamed - kv / 2)
        #expect(throws: ReelError.self) { _ = try ResidencyPlan.make(estimate: e, dit: c, cap: cap) }
        let plan = try ResidencyPlan.make(estimate: e, dit: c, cap: cap, hostKVCache: true)
        #expect(plan.kvCacheOnHost && plan.residentLayers == 0 && plan.slots == 2 && plan.textEncoder == .cpu)
        // Half the cache's room is left: 15 layers' K/V, less the two scratches, stay on the device.
        let layerKV = kv / Double(c.layers)
        #expect(plan.kvDeviceLayers == c.layers / 2 - 2)
        #expect(abs(plan.deviceBytes - (allStreamed - kv + Double(2 + plan.kvDeviceLayers) * layerKV)) < 1)
        #expect(plan.deviceBytes <= Double(cap))
        #expect(plan.deviceBytes(for: e) == plan.deviceBytes)
        #expect(plan.description.contains("KV cache: layers 0..<13 on the device"), "\(plan.description)")
        #expect(plan.placement.contains("the KV cache in host memory"))
        // Room for the scratches and nothing more: every layer's K/V in host memory.
        let tight = try ResidencyPlan.make(estimate: e, dit: c, cap: Int(allStreamed - kv + 2.5 * layerKV), hostKVCache: true)
        #expect(tight.kvCacheOnHost && tight.kvDeviceLayers == 0)
        #expect(tight.description.contains("KV cache: in host memory"), "\(tight.description)")
        let small = try #require(throws: ReelError.self) {
            _ = try ResidencyPlan.make(estimate: e, dit: c, cap: 1_000_000_000, hostKVCache: true)
        }
        #expect("\(small)".contains("and the KV cache in host memory it needs"), "\(small)")
    }

    /// The text encoder in FP8 on the device comes between the device in bf16 and the CPU.
    @Test func theTextEncoderTriesFP8BeforeTheCPU() throws {
        let c = WanDiTConfig.wan1_3B, e = Self.estimate(c)
        let fp8 = ResidencyPlan.textEncoderFP8Bytes(.xxl, parameters: UMT5Config.xxl.parameterCount, dtype: .bf16)
        let text = e.total - e.withoutTextEncoder
        #expect(fp8 < text * 0.6 && fp8 > text * 0.5)
        let plan = try ResidencyPlan.make(estimate: e, dit: c, cap: Int(e.withoutTextEncoder + fp8) + 1,
                                          textEncoderFP8Bytes: fp8)
        #expect(plan.textEncoder == .deviceFP8 && plan.streamedLayers == 0, "\(plan.description)")
        #expect(plan.deviceBytes(for: e) == plan.deviceBytes)
        #expect(plan.description.contains("text encoder: on the device in FP8"))
        let tighter = try ResidencyPlan.make(estimate: e, dit: c, cap: Int(e.withoutTextEncoder + fp8) - 1,
                                             textEncoderFP8Bytes: fp8)
        #expect(tighter.textEncoder == .cpu)
    }
}
