import Foundation
import ReelCore
import ReelCUDA
import ReelModels
import ReelPipeline

/// `reel bench --gpu-memory GB`: the placement of the benchmark's DiT under the cap, the rate of the host-to-device
/// link with page-locked memory, and the bytes streamed per block against it.
extension Bench {
    /// The DiT placed by `ResidencyPlan` under `--gpu-memory` (the model itself without it); prints the plan and
    /// the measured host-to-device rate (bytes/s, nil without streaming).
    func placedUnderCap(_ dit: WanDiT, backend: any Backend, geometry: BlockGeometry) throws -> (WanDiT, Double?) {
        guard let cap = backendOptions.memoryCap else { return (dit, nil) }
        let c = dit.config, dtype = backendOptions.storageType
        let vae: MemoryEstimate.Decoder? = decoder == .vae
            ? .wanVAE(.wan21, parameters: WanVAEDecoder.weightShapes(.wan21).reduce(0) { $0 + $1.1.count }) : nil
        let estimate = MemoryEstimate.streaming(dit: c, ditParameters: WanDiT.weightShapes(c).reduce(0) { $0 + $1.1.count },
                                                textEncoderParameters: nil, decoder: vae, geometry: geometry, dtype: dtype,
                                                quantization: dit.quantization, kvCache: dit.kvCache)
        let plan = try ResidencyPlan.make(estimate: estimate, dit: c, cap: cap, slots: backendOptions.streamSlots,
                                          dtype: dtype, quantization: dit.quantization, reserve: backendOptions.memoryReserve,
                                          hostKVCache: true)
        print(plan.description)
        guard plan.streamedLayers > 0 else { return (dit, nil) }
        let copyStream = try backend.device.makeStream()
        let rate = try Self.hostToDeviceRate(copyStream)
        print(String(format: "host-to-device rate measured with page-locked memory: %.1f GB/s (%@)", rate / 1e9, copyStream.name))
        let streamed = try dit.streamingBlocks(from: plan.residentLayers, slots: plan.slots, copyStream: copyStream)
        if plan.kvCacheOnHost {
            streamed.hostKVCache = copyStream as? any HostToDeviceCopying
            streamed.hostKVCacheFrom = plan.kvDeviceLayers
        }
        try backend.synchronize()
        return (streamed, rate)
    }

    /// Copies 256 MB from page-locked host memory to the device 4 times on `stream` and returns bytes per second.
    static func hostToDeviceRate(_ stream: any Backend, bytes: Int = 256 << 20) throws -> Double {
        guard let copier = stream as? any HostToDeviceCopying else { return 0 }
        let host = try copier.makeHostBuffer(bytes: bytes)
        memset(host.baseAddress, 1, bytes)
        let device = try stream.allocate([bytes], dtype: .uint8)
        try copier.copy(fromHost: host.baseAddress, into: device)     // first touch, outside the timing
        let start = try stream.recordTimedEvent()
        for _ in 0..<4 { try copier.copy(fromHost: host.baseAddress, into: device) }
        let end = try stream.recordTimedEvent()
        try end.synchronize()
        let seconds = try end.seconds(since: start)
        return Double(4 * bytes) / max(seconds, 1e-9)
    }

    /// The lines on what streaming moved during the measured blocks: bytes per block, and the time the link takes
    /// for them at the measured rate against the DiT's time per block.
    /// `kvTraffic`: the measured stream's KV cache traffic in host memory (bytes up and back over its `blocks`), nil
    /// with the cache on the device; it shares the copy stream with the weights, so the link time counts both.
    static func streamingReport(_ dit: WanDiT, uploadedBefore: Int, kvTraffic: (uploaded: Int, writtenBack: Int)? = nil,
                                blocks: Int, rate: Double?, ditMedian: Double) -> String? {
        guard let s = dit.weightStreaming else { return nil }
        let weights = Double(s.bytesUploaded - uploadedBefore) / Double(blocks)
        var line = String(format: "weights streamed: blocks %d..<%d through %d slots (%.2f GB of slots); %.2f GB per DiT pass, "
                          + "%.2f GB moved per block (%.1f passes)", s.firstLayer, s.firstLayer + s.layers, s.slots,
                          Double(s.slotBytes) / 1e9, Double(s.bytesPerPass) / 1e9, weights / 1e9,
                          weights / Double(max(s.bytesPerPass, 1)))
        var perBlock = weights
        if let kvTraffic {
            let up = Double(kvTraffic.uploaded) / Double(blocks), down = Double(kvTraffic.writtenBack) / Double(blocks)
            line += String(format: "\nKV cache in host memory: %.2f GB up and %.2f GB back per block", up / 1e9, down / 1e9)
            perBlock += up + down
        }
        if let rate, rate > 0 {
            let linkSeconds = perBlock / rate
            line += String(format: "\nstreaming per block at the measured link rate (weights%@): %.0f ms of %.0f ms DiT time per block "
                           + "(link busy %.0f%%; PCIe used at %.1f GB/s of %.1f GB/s)", kvTraffic == nil ? "" : " and KV cache",
                           linkSeconds * 1000, ditMedian * 1000,
                           100 * linkSeconds / ditMedian, perBlock / ditMedian / 1e9, rate / 1e9)
        }
        return line
    }
}
