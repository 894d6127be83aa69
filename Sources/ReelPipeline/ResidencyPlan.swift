import ReelCore
import ReelModels

/// Where a model's parts live under a device-memory cap (`--gpu-memory`): how many of the DiT's blocks stay on
/// the device and how many stream from host memory through a ring of device slots, and where the text
/// encoder runs. Made from a `MemoryEstimate`; `reel inspect DIR --gpu-memory GB` prints it.
///
/// The order of choices: every DiT block resident with the text encoder on the device; then the text encoder on
/// the CPU (it runs once per prompt: a prompt switch pays its encode time, printed); then DiT blocks streamed,
/// from the last block back, each step freeing one block's bytes and costing one upload per block pass.
/// What always stays on the device: the embeddings and head, the KV cache, the prompts' K/V, the activations,
/// the decoder and `slots` streamed blocks. When even that does not fit, the plan refuses with what it needs.
public struct ResidencyPlan: Sendable, Equatable {
    /// Where the text encoder runs.
    public enum TextEncoderPlace: String, Sendable {
        /// On the DiT's device, in the run's dtype.
        case device
        /// On the DiT's device with its blocks' linears in FP8 E4M3 per output channel (`UMT5Encoder.load(quantization:)`).
        case deviceFP8
        /// On the CPU (`--text-backend cpu`), in host memory.
        case cpu
        /// The model has no text encoder (a benchmark's random DiT, a precomputed embedding).
        case none
    }

    /// The cap in bytes.
    public var cap: Int
    /// Bytes of the cap kept back from the plan for what the estimate leaves out (allocator slack, a backend's own
    /// temporaries): the plan places the model in `cap - reserve`; the allocator still stops at `cap`.
    public var reserve = 0
    /// The DiT's blocks (transformer layers).
    public var layers: Int
    /// Blocks kept on the device: blocks 0..<residentLayers; the rest stream.
    public var residentLayers: Int
    /// Device slots the streamed blocks pass through (0 when none stream).
    public var slots: Int
    /// One block's weights in bytes.
    public var layerBytes: Double
    /// Where the text encoder runs.
    public var textEncoder: TextEncoderPlace
    /// The KV cache in host memory, each layer's K/V passing through two device scratches of one layer's
    /// (`WanKVCache.init(hostCopier:)`): the step after every block streams.
    public var kvCacheOnHost = false
    /// With `kvCacheOnHost`: layers `0..<kvDeviceLayers` keep their K/V on the device (as many as the cap holds
    /// beside the scratches); the rest pass through the scratches.
    public var kvDeviceLayers = 0
    /// The text encoder's device bytes in FP8 (`textEncoder == .deviceFP8`), nil otherwise.
    public var textEncoderFP8Bytes: Double?
    /// Host memory the plan may use (`--host-memory`, default MemAvailable); nil: not asked.
    public var hostMemory: Int?
    /// The streamed blocks' host copies (`hostBytes`) would not fit `hostMemory`: they stream from the memory-mapped
    /// weight file instead, through a page-locked bounce buffer per slot.
    public var streamsFromFile: Bool { streamedLayers > 0 && hostMemory.map { Double($0) < hostBytes } == true }
    /// The device bytes of the plan (the estimate's, with streamed blocks counted as their slots).
    public var deviceBytes: Double
    /// The estimate the plan was made from.
    public var estimate: MemoryEstimate

    /// Blocks streamed from host memory.
    public var streamedLayers: Int { layers - residentLayers }
    /// Bytes of host memory (page-locked on CUDA) the streamed blocks take.
    public var hostBytes: Double { Double(streamedLayers) * layerBytes }
    /// Bytes uploaded per pass of the DiT over a block's frames (one denoising step, a clean pass).
    public var bytesPerPass: Double { hostBytes }

    /// The plan for `estimate` of a DiT `dit` under `cap` bytes, streaming through `slots` device slots
    /// (2: one block computes while the next uploads; 3 hides an upload slower than one block's compute).
    /// `quantization`: the blocks' layers in FP8 or INT8, as the estimate was made.
    /// Throws `ReelError.overMemoryCap` naming what the smallest placement needs when it does not fit.
    /// `reserve`: bytes of the cap the plan leaves free (`reserve`). `hostKVCache`: whether the KV cache may move
    /// to host memory as the last step (LongLive 1.0's cache, bf16 or FP8; not LongLive 2.0's).
    public static func make(estimate: MemoryEstimate, dit: WanDiTConfig, cap: Int, slots: Int = 2,
                            dtype: DType = .bf16, quantization: LinearQuantization? = nil,
                            reserve: Int = 0, hostKVCache: Bool = false, hostMemory: Int? = nil,
                            textEncoderFP8Bytes: Double? = nil) throws -> ResidencyPlan {
        precondition(slots >= 1, "ResidencyPlan: at least one slot")
        let layerBytes = blockBytes(dit, dtype: dtype, quantization: quantization)
        let hasText = estimate.items.contains(where: \.isTextEncoder)
        let fixed = estimate.withoutTextEncoder - Double(dit.layers) * layerBytes
        let capacity = Double(cap - reserve)
        var plan = ResidencyPlan(cap: cap, layers: dit.layers, residentLayers: dit.layers, slots: 0,
                                 layerBytes: layerBytes, textEncoder: hasText ? .device : .none,
                                 deviceBytes: estimate.total, estimate: estimate)
        plan.reserve = reserve
        plan.hostMemory = hostMemory
        if estimate.total <= capacity { return plan }
        // The text encoder in FP8 on the device, before it leaves for the CPU (no prompt pays a CPU encode).
        if hasText, let fp8 = textEncoderFP8Bytes, estimate.withoutTextEncoder + fp8 <= capacity {
            plan.textEncoder = .deviceFP8
            plan.textEncoderFP8Bytes = fp8
            plan.deviceBytes = estimate.withoutTextEncoder + fp8
            return plan
        }
        if hasText { plan.textEncoder = .cpu }
        plan.deviceBytes = estimate.withoutTextEncoder
        if plan.deviceBytes <= capacity { return plan }
        // Stream the blocks from the last back: the most resident blocks whose bytes and the slots fit.
        for resident in stride(from: dit.layers - 1, through: 0, by: -1) {
            let ring = min(slots, dit.layers - resident)
            let bytes = fixed + Double(resident + ring) * layerBytes
            if bytes <= capacity {
                plan.residentLayers = resident
                plan.slots = ring
                plan.deviceBytes = bytes
                return plan
            }
        }
        // Every block streamed and the KV cache in host memory: two scratches of one layer's K/V stay, and the
        // first layers' K/V as far as the cap holds them (each layer kept saves its upload every pass).
        let kvItem = estimate.items.first { $0.name == "KV cache" }
        let kv = (kvItem?.bytes ?? 0) - (kvItem?.shared ?? 0)
        let ring = Double(min(slots, dit.layers)) * layerBytes
        let layerKV = kv / Double(dit.layers)
        let hostKV = fixed - kv + 2 * layerKV + ring
        if hostKVCache && kv > 0 && hostKV <= capacity {
            plan.residentLayers = 0
            plan.slots = min(slots, dit.layers)
            plan.kvCacheOnHost = true
            plan.kvDeviceLayers = min(dit.layers - 1, Int((capacity - hostKV) / layerKV))
            plan.deviceBytes = hostKV + Double(plan.kvDeviceLayers) * layerKV
            return plan
        }
        let least = hostKVCache && kv > 0 ? hostKV : fixed + ring
        throw ReelError.input(
            "--gpu-memory \(MemoryBudget.gigabytes(cap)) cannot hold this request: with every DiT block streamed "
                + "through \(min(slots, dit.layers)) slots\(hasText ? " and the text encoder on the CPU" : "")"
                + (hostKVCache && kv > 0 ? " and the KV cache in host memory" : "") + " it needs "
                + "\(MemoryBudget.gigabytes(Int(least) + reserve)) on the device (\(needs(estimate, fixed: fixed)), "
                + "\(min(slots, dit.layers)) x \(MemoryBudget.gigabytes(Int(layerBytes))) block slots"
                + (reserve > 0 ? ", \(MemoryBudget.gigabytes(reserve)) kept back" : "") + "); "
                + "raise --gpu-memory to at least that, or lower --size")
    }

    /// The device bytes of this placement (the same resident blocks, slots and text encoder place) for `estimate`,
    /// the same model's at another video size.
    public func deviceBytes(for estimate: MemoryEstimate) -> Double {
        let fixed = estimate.withoutTextEncoder - Double(layers) * layerBytes
        let text = switch textEncoder {
        case .device: estimate.total - estimate.withoutTextEncoder
        case .deviceFP8: textEncoderFP8Bytes ?? 0
        case .cpu, .none: 0.0
        }
        let kvItem = estimate.items.first { $0.name == "KV cache" }
        let kv = (kvItem?.bytes ?? 0) - (kvItem?.shared ?? 0)
        let hostKV = kvCacheOnHost ? Double(2 + kvDeviceLayers) * kv / Double(layers) - kv : 0
        return fixed + Double(residentLayers + slots) * layerBytes + text + hostKV
    }

    /// Throws unless this placement holds `estimate` (the same model at the video size `what` names) under the
    /// cap: a clear refusal naming the device memory it needs (a larger session size in `reel serve`).
    public func check(_ estimate: MemoryEstimate, what: String) throws {
        let needed = deviceBytes(for: estimate) + Double(reserve)
        guard needed > Double(cap) else { return }
        let fixed = estimate.withoutTextEncoder - Double(layers) * layerBytes
        throw ReelError.input(
            "--gpu-memory \(MemoryBudget.gigabytes(cap)) cannot hold \(what): with the model placed as it is (\(placement)) "
                + "it needs \(MemoryBudget.gigabytes(Int(needed))) on the device (\(Self.needs(estimate, fixed: fixed))); "
                + "ask for a smaller size, or start the server with a larger --gpu-memory")
    }

    /// "blocks 0..<25 on the device, 5 streamed through 2 slots, the text encoder on the CPU".
    public var placement: String {
        var parts = [streamedLayers == 0 ? "all \(layers) DiT blocks on the device"
                     : "DiT blocks 0..<\(residentLayers) on the device, \(streamedLayers) streamed through \(slots) slots"]
        if kvCacheOnHost { parts.append("the KV cache in host memory") }
        switch textEncoder {
        case .device: parts.append("the text encoder on the device")
        case .deviceFP8: parts.append("the text encoder on the device in FP8")
        case .cpu: parts.append("the text encoder on the CPU")
        case .none: break
        }
        return parts.joined(separator: ", ")
    }

    /// "KV cache 2.10 GB, DiT activations 1.2 GB, ...": the items that stay on the device.
    static func needs(_ e: MemoryEstimate, fixed: Double) -> String {
        e.items.filter { !$0.isTextEncoder && $0.name != "DiT weights" }
            .map { "\($0.name) \(MemoryBudget.gigabytes(Int($0.bytes)))" }.joined(separator: ", ")
            + ", DiT embeddings and head"
    }

    /// umT5's bytes with its blocks' linears in FP8 (1 byte a weight, a float32 scale per output channel) and the
    /// rest (`parameters` in all) in `dtype`.
    public static func textEncoderFP8Bytes(_ c: UMT5Config, parameters: Int, dtype: DType) -> Double {
        let inner = c.heads * c.headDim
        let linear = c.layers * (4 * inner * c.dim + 3 * c.ffnDim * c.dim)
        let scales = c.layers * (3 * inner + 2 * c.dim + 2 * c.ffnDim)
        return Double(parameters - linear) * Double(dtype.size) + Double(linear) + 4 * Double(scales)
    }

    /// One DiT block's weights in bytes (`WanDiT.blockParameters`), its quantized layers (FP8 or INT8) at
    /// 1 byte a weight plus a float32 scale per output channel (as `MemoryEstimate.streaming` counts them).
    public static func blockBytes(_ c: WanDiTConfig, dtype: DType, quantization: LinearQuantization?) -> Double {
        let all = WanDiT.blockParameters(c), every = quantization?.layers == .allLinears
        let quantized = quantization.map { _ in 2 * c.dim * c.ffnDim + (every ? 8 * c.dim * c.dim : 0) } ?? 0
        let scales = quantization.map { _ in c.ffnDim + c.dim + (every ? 8 * c.dim : 0) } ?? 0
        return Double(all - quantized) * Double(dtype.size) + Double(quantized) + 4 * Double(scales)
    }

    /// The lines `reel inspect --gpu-memory` prints.
    public var description: String {
        var lines = ["placement under --gpu-memory \(MemoryBudget.gigabytes(cap)):"]
        if streamedLayers == 0 {
            lines.append("  DiT: all \(layers) blocks on the device")
        } else {
            let source = streamsFromFile
                ? "the memory-mapped weight file (their \(MemoryBudget.gigabytes(Int(hostBytes))) do not fit the "
                    + "\(MemoryBudget.gigabytes(hostMemory ?? 0)) of host memory available; through a page-locked "
                    + "bounce buffer per slot)"
                : "page-locked host memory (\(MemoryBudget.gigabytes(Int(hostBytes))))"
            lines.append("  DiT: blocks 0..<\(residentLayers) on the device, \(streamedLayers) streamed from \(source) "
                         + "through \(slots) device slots of \(MemoryBudget.gigabytes(Int(layerBytes)))")
            lines.append("  uploads: \(MemoryBudget.gigabytes(Int(bytesPerPass))) per DiT pass (each denoising step "
                         + "and the clean pass of a block)")
        }
        switch textEncoder {
        case .device: lines.append("  text encoder: on the device")
        case .deviceFP8:
            lines.append("  text encoder: on the device in FP8 (\(MemoryBudget.gigabytes(Int(textEncoderFP8Bytes ?? 0))); its "
                         + "linears per output channel, the embedding and norms in the run's dtype)")
        case .cpu: lines.append("  text encoder: on the CPU (--text-backend cpu; a new prompt's encode time is printed)")
        case .none: break
        }
        lines.append("  device memory planned: \(MemoryBudget.gigabytes(Int(deviceBytes))) of \(MemoryBudget.gigabytes(cap))"
                     + (reserve > 0 ? " (\(MemoryBudget.gigabytes(reserve)) kept back)" : ""))
        if kvCacheOnHost {
            let layerKV = layerKVCacheBytes, onHost = layers - kvDeviceLayers
            lines.append("  KV cache: " + (kvDeviceLayers > 0
                    ? "layers 0..<\(kvDeviceLayers) on the device (\(MemoryBudget.gigabytes(Int(Double(kvDeviceLayers) * layerKV)))), "
                        + "layers \(kvDeviceLayers)..<\(layers) in host memory (\(MemoryBudget.gigabytes(Int(Double(onHost) * layerKV))))"
                    : "in host memory (\(MemoryBudget.gigabytes(Int(Double(layers) * layerKV))))")
                + ", each host layer's K/V through 2 device scratches of \(MemoryBudget.gigabytes(Int(layerKV))), uploaded "
                + "before its attention and its new rows written back")
        } else {
            lines.append("  KV cache: on the device (\(MemoryBudget.gigabytes(Int(kvCacheBytes))))")
        }
        return lines.joined(separator: "\n")
    }

    var kvCacheBytes: Double { estimate.items.first { $0.name == "KV cache" }?.bytes ?? 0 }
    /// One layer's K/V (and FP8 scales) of the cache, without what every layer shares (the FP8 scratch).
    var layerKVCacheBytes: Double {
        let item = estimate.items.first { $0.name == "KV cache" }
        return ((item?.bytes ?? 0) - (item?.shared ?? 0)) / Double(layers)
    }
}
