import ReelCore
import ReelModels

/// The device memory a model takes while it streams video of one size: weights in the run's dtype, the
/// KV cache of the schedule's attention window, the prompts' cross-attention K/V, and the transient
/// activations of the DiT and decoder. What `reel inspect DIR` prints; docs/model-folders.md compares it
/// with the peaks `reel bench` measured (docs/perf-notes.md).
public struct MemoryEstimate: Sendable, Equatable {
    /// One line of the estimate.
    public struct Item: Sendable, Equatable {
        public var name: String
        public var bytes: Double
        /// How the figure is made ("30 layers x K,V x 12 frames x 1560 tokens x 1536 x 2 B").
        public var detail: String
        /// The text encoder: left out of `reel bench`'s measured peaks (it encodes no prompt there).
        public var isTextEncoder = false
        /// Of `bytes`, what stays on the device whatever the layers' placement (the FP8 KV cache's scratch that
        /// attention reads: one layer's K,V in the model's dtype).
        public var shared = 0.0
    }

    public var items: [Item]

    public var total: Double { items.reduce(0) { $0 + $1.bytes } }
    public var withoutTextEncoder: Double { items.filter { !$0.isTextEncoder }.reduce(0) { $0 + $1.bytes } }
}

extension MemoryEstimate {
    /// The decoder a video streams through.
    public enum Decoder: Sendable, Equatable {
        case wanVAE(WanVAEConfig, parameters: Int)
        case tiny(channels: [Int], parameters: Int)
    }

    /// Prompts whose cross-attention K/V are alive at once: the current one and the one a switch
    /// recaches with.
    static let livePrompts = 2

    /// The estimate for a DiT of `dit` (with `ditParameters` weights), a text encoder of
    /// `textEncoderParameters` (nil: none on the device) and `decoder`, streaming `geometry` under
    /// `schedule` with weights and activations in `dtype`.
    /// `quantization`: those block weights in FP8 E4M3 or INT8, 1 byte each plus a float32 scale per output
    /// channel (`--fp8` or `--int8`, `--fp8-layers`, `WanDiT.quantized`).
    /// `kvCache`: how the KV cache stores keys and values (`--kv-cache`; FP8: 1 byte a value and a 4-byte scale
    /// per headDim row, plus one layer's K,V in `dtype` that attention reads them from).
    public static func streaming(dit c: WanDiTConfig, ditParameters: Int, textEncoderParameters: Int?,
                                 decoder: Decoder?, geometry g: BlockGeometry, schedule: StreamingSchedule = .longLive,
                                 dtype: DType = .bf16, quantization: LinearQuantization? = nil,
                                 kvCache: KVCacheStorage = .model) -> MemoryEstimate {
        let b = Double(dtype.size)
        let tokens = (g.latentHeight / c.patch) * (g.latentWidth / c.patch)
        // FFN: up and down; attention: q, k, v, o of self- and cross-attention.
        // Their output channels (one float32 scale each): FFN up and down; 8 projections of dim.
        let all = quantization?.layers == .allLinears
        let quantized = quantization.map { _ in c.layers * (2 * c.dim * c.ffnDim + (all ? 8 * c.dim * c.dim : 0)) } ?? 0
        let scales = quantization.map { _ in c.layers * (c.ffnDim + c.dim + (all ? 8 * c.dim : 0)) } ?? 0
        var items: [Item] = [
            Item(name: "DiT weights", bytes: Double(ditParameters - quantized) * b + Double(quantized) + 4 * Double(scales),
                 detail: "\(grouped(ditParameters)) parameters x \(dtype.size) B"
                     + (quantization.map { ", the \(all ? "block linears'" : "FFN's") \(grouped(quantized)) x 1 B (\($0.format.name))"
                         + " + \(grouped(scales)) scales x 4 B" } ?? "")
                     + " (a LoRA is merged at load)"),
        ]
        if let textEncoderParameters {
            items.append(Item(name: "text encoder", bytes: Double(textEncoderParameters) * b,
                              detail: "\(grouped(textEncoderParameters)) parameters x \(dtype.size) B, on the DiT's device",
                              isTextEncoder: true))
        }
        let window = schedule.attentionFrames
        let cacheRows = "\(c.layers) layers x K,V x \(window) frames (\(schedule.sinkFrames) sink) x \(tokens) tokens"
        switch kvCache {
        case .model:
            items.append(Item(name: "KV cache", bytes: Double(c.layers * 2 * window * tokens * c.dim) * b,
                              detail: cacheRows + " x \(c.dim) x \(dtype.size) B"))
        case .fp8:
            let stored = Double(c.layers * 2 * window * tokens * c.heads * (c.headDim + 4))
            let scratch = Double(2 * window * tokens * c.dim) * b
            items.append(Item(name: "KV cache", bytes: stored + scratch,
                              detail: cacheRows + " x \(c.heads) heads x (\(c.headDim) x 1 B + 4 B scale) (FP8)"
                                  + ", + 1 layer's K,V x \(dtype.size) B read by attention", shared: scratch))
        }
        items.append(Item(name: "prompt K/V", bytes: Double(livePrompts * c.layers * 2 * c.textLength * c.dim) * b,
                          detail: "\(livePrompts) prompts x \(c.layers) layers x K,V x \(c.textLength) tokens x \(c.dim)"))
        // A forward over one block's queries (a recache runs its frames a block at a time): the FFN's
        // hidden rows and about a dozen rows of the model's width (norms, q, k, v, attention out, residuals).
        let queries = schedule.framesPerBlock * tokens
        // INT8 linears: cuBLASLt's int32 sums of the widest one (the FFN's up projection), 4 B each, before the epilogue.
        let int8Sums = quantization?.format == .int8 ? Double(queries * c.ffnDim * 4) : 0
        items.append(Item(name: "DiT activations", bytes: Double(queries * (c.ffnDim + 12 * c.dim)) * b + int8Sums,
                          detail: "\(queries) queries x (ffn \(c.ffnDim) + 12 x \(c.dim))"
                              + (int8Sums > 0 ? ", + the INT8 GEMM's int32 sums (\(queries) x \(c.ffnDim) x 4 B)" : "")))
        switch decoder {
        case .wanVAE(let v, let parameters):
            let (caches, transient) = vaeDecoderActivations(v, latentHeight: g.latentHeight, latentWidth: g.latentWidth)
            items.append(Item(name: "Wan VAE decoder weights", bytes: Double(parameters) * b,
                              detail: "\(grouped(parameters)) parameters"))
            items.append(Item(name: "Wan VAE causal caches", bytes: caches * b,
                              detail: "2 frames of every causal convolution's input, kept between latent frames"))
            items.append(Item(name: "Wan VAE activations", bytes: transient * b,
                              detail: "the largest of 3 stage outputs, or a resample's input, x2 copy and output"))
        case .tiny(let channels, let parameters):
            let (memory, transient) = tinyDecoderActivations(channels, latentHeight: g.latentHeight,
                                                             latentWidth: g.latentWidth)
            items.append(Item(name: "TAEHV decoder weights", bytes: Double(parameters) * b,
                              detail: "\(grouped(parameters)) parameters"))
            items.append(Item(name: "TAEHV memory and activations", bytes: (memory + transient) * b,
                              detail: "each block's previous frame, and 3 tensors of the largest stage"))
        case nil:
            break
        }
        return MemoryEstimate(items: items)
    }

    /// Elements the Wan VAE decoder keeps between latent frames (each causal 3-tap convolution's last
    /// two input frames, Wan2.1 `vae.py` CACHE_T = 2) and its largest transient (3 tensors of the
    /// biggest stage output, or a resample's input, upsampled copy and output; stages after the last time
    /// upsampling run one frame at a time).
    static func vaeDecoderActivations(_ c: WanVAEConfig, latentHeight h: Int, latentWidth w: Int) -> (Double, Double) {
        var caches = 0.0, largest = 0.0
        func causal(_ cin: Int, pixels: Int) { caches += 2 * Double(cin * pixels) }
        let dims = c.decoderDims
        let upsampleInTime = Array(c.temporalDownsample.reversed())
        let lastTimeUpsample = upsampleInTime.lastIndex(of: true) ?? -1
        var pixels = h * w, frames = 1
        causal(c.zDim, pixels: pixels)
        for _ in 0..<4 { causal(dims[0], pixels: pixels) }   // the middle's two residual blocks
        for i in 0..<c.dimMult.count {
            var cin = i == 0 || c.isResidual ? dims[i] : dims[i] / 2
            let cout = dims[i + 1]
            for _ in 0...c.numResBlocks {
                causal(cin, pixels: pixels)
                causal(cout, pixels: pixels)
                cin = cout
            }
            let together = i > lastTimeUpsample ? 1 : frames
            largest = max(largest, 3 * Double(cout * pixels * together))
            if i != c.dimMult.count - 1 {
                var after = together
                if i < upsampleInTime.count, upsampleInTime[i] {
                    causal(cout, pixels: pixels)   // time_conv
                    frames *= 2
                    after *= 2
                }
                // The resample's peak: its input (time-upsampled), the nearest x2 copy at full width and the 3x3
                // conv's output (half the width in Wan2.1) at once. The largest transient of the Wan2.1 decoder:
                // at 832x480, stage 1's copy is [4 frames, 240 x 416, 384] (306.7 MB in bf16; a 14B bench under a
                // cap failed allocating it when this estimate counted stage outputs only).
                let out = c.isResidual ? cout : cout / 2
                largest = max(largest, Double(after * pixels * (cout + 4 * cout + 4 * out)))
                pixels *= 4
            }
        }
        causal(dims[c.dimMult.count], pixels: pixels)   // head
        return (caches, largest)
    }

    /// Elements of TAEHV's per-block memory (the previous frame of each MemBlock's input) and its
    /// largest transient (3 tensors of the last stage at full size).
    static func tinyDecoderActivations(_ channels: [Int], latentHeight h: Int, latentWidth w: Int) -> (Double, Double) {
        var memory = 0.0, largest = 0.0, pixels = h * w
        for (s, n) in channels.prefix(3).enumerated() {
            memory += 3 * Double(n * pixels)
            pixels *= 4
            largest = max(largest, Double(channels[s + 1] * pixels))
        }
        return (memory, 3 * largest)
    }

    /// 1234567 -> "1,234,567".
    public static func grouped(_ n: Int) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, d) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(d)
        }
        return out
    }
}

extension UMT5Config {
    /// Weights of the encoder (token table, blocks, final norm).
    public var parameterCount: Int {
        let inner = heads * headDim
        return vocabulary * dim + dim + layers * (2 * dim + 4 * inner * dim + buckets * heads + 3 * ffnDim * dim)
    }
}
