import Foundation
import ReelCore

/// A Wan VAE decoder's weights and forward pass (Wan2.1 `Decoder3d` or Wan2.2 `Decoder3d` of vae2_2.py, plus the
/// `conv2` post-quant conv and latent de-normalization). Immutable: the per-stream state lives in
/// `StreamingVAEDecoder`, so one set of weights can serve several streams.
///
/// Structure (Wan2.1 sizes): conv1 16 -> 384; middle Res, Attn, Res (384);
/// stage 0: 3 Res(384) + upsample3d; stage 1: Res(192 -> 384) + 2 Res(384) + upsample3d;
/// stage 2: 3 Res(192) + upsample2d; stage 3: 3 Res(96); head RMS_norm, SiLU, conv 96 -> 3.
///
/// Wan2.2 (`isResidual`, `WanVAEConfig.wan22`): conv1 48 -> 1024; middle Res, Attn, Res (1024);
/// stage 0: 3 Res(1024) + upsample3d (1024 -> 1024) + DupUp3D shortcut (t x2, hw x2);
/// stage 1: the same; stage 2: Res(1024 -> 512) + 2 Res(512) + upsample2d + DupUp3D (hw x2);
/// stage 3: Res(512 -> 256) + 2 Res(256); head RMS_norm, SiLU, conv 256 -> 12, then the 12 channels
/// unpacked into 2x2 patches of RGB.
public final class WanVAEDecoder: @unchecked Sendable {
    public let config: WanVAEConfig
    public let backend: any Backend
    let mean: Tensor           // [z]
    let std: Tensor            // [z]
    let conv2: CausalConv3d    // post-quant 1x1x1, z -> z
    let conv1: CausalConv3d
    let middle0: ResidualBlock
    let middleAttention: AttentionBlock
    let middle2: ResidualBlock
    /// Residual blocks and resamples of every stage, in order (Wan2.1's flat `decoder.upsamples.N`).
    let upsamples: [UpsampleLayer]
    /// Each stage's layers in `upsamples` and (Wan2.2) the shortcut around them.
    let stages: [Stage]
    let headNorm: ChannelRMSNorm
    let headConv: CausalConv3d
    /// Number of cache slots a stream needs.
    let slotCount: Int
    /// Index in `upsamples` of the first layer after the last time upsampling (a stage's first layer): from
    /// there on every layer works frame by frame or causally with its own cache (`forward` slices the frames there).
    let sliceStart: Int

    enum UpsampleLayer {
        case residual(ResidualBlock)
        case resample(Resample)
    }

    struct Stage {
        let layers: Range<Int>
        var shortcut: DupUp3D?
    }

    /// Binds the decoder from `binder` (canonical Wan keys: `decoder.*`, `conv2.*`).
    init(config: WanVAEConfig, binder w: WeightBinder) throws {
        try config.validate()
        self.config = config
        backend = w.backend
        let z = config.zDim
        mean = try w.backend.tensor(config.latentsMean, shape: [z], dtype: w.dtype)
        std = try w.backend.tensor(config.latentsStd, shape: [z], dtype: w.dtype)
        var slots = SlotAllocator()
        conv2 = try CausalConv3d(w, "conv2", cin: z, cout: z, kernel: (1, 1, 1), padHW: 0, slots: &slots)

        // dims = dim * [mult[-1]] + mult reversed: [384, 384, 384, 192, 96] for Wan2.1, [1024, 1024, 1024, 512, 256] for 2.2
        let dims = config.decoderDims
        conv1 = try CausalConv3d(w, "decoder.conv1", cin: z, cout: dims[0], kernel: (3, 3, 3), padHW: 1, slots: &slots)
        middle0 = try ResidualBlock(w, "decoder.middle.0", cin: dims[0], cout: dims[0], slots: &slots)
        middleAttention = try AttentionBlock(w, "decoder.middle.1", dim: dims[0])
        middle2 = try ResidualBlock(w, "decoder.middle.2", cin: dims[0], cout: dims[0], slots: &slots)

        var layers: [UpsampleLayer] = [], stages: [Stage] = []
        let count = config.dimMult.count
        let temporal = config.temporalUpsample
        for i in 0..<count {
            // Wan2.1: every stage after the first starts from the halved output of the previous resample.
            var cin = i == 0 || config.isResidual ? dims[i] : dims[i] / 2
            let cout = dims[i + 1], first = layers.count
            for j in 0...config.numResBlocks {
                let key = config.decoderLayerKey(stage: i, block: j, flatIndex: layers.count)
                layers.append(.residual(try ResidualBlock(w, key, cin: cin, cout: cout, slots: &slots)))
                cin = cout
            }
            var shortcut: DupUp3D?
            if i != count - 1 {
                let mode: Resample.Mode = temporal[i] ? .upsample3d : .upsample2d
                let key = config.decoderLayerKey(stage: i, block: config.numResBlocks + 1, flatIndex: layers.count)
                layers.append(.resample(try Resample(w, key, dim: cout, mode: mode, halvesOnUpsample: !config.isResidual,
                                                     slots: &slots)))
                if config.isResidual { shortcut = DupUp3D(cin: dims[i], cout: cout, factorT: temporal[i] ? 2 : 1, factorS: 2) }
            }
            stages.append(Stage(layers: first..<layers.count, shortcut: shortcut))
        }
        let sliceStart = (layers.lastIndex {
            if case let .resample(r) = $0 { return r.mode == .upsample3d }
            return false
        }).map { $0 + 1 } ?? 0
        self.sliceStart = sliceStart
        // Layers past the last time upsampling get one frame at a time (sliced): their causal convs keep
        // the 2 cached frames as a pair and run a 2-frame conv over it plus a 1-frame conv over the new
        // frame, instead of joining the cached frames to the new one by a copy.
        let taps = w.backend.tuning.vaeTimeTaps
        if taps {
            for i in sliceStart..<layers.count {
                if case let .residual(block) = layers[i] { layers[i] = .residual(try block.withTimeTaps()) }
            }
        }
        upsamples = layers
        self.stages = stages
        let last = dims[count]
        headNorm = try ChannelRMSNorm(w, "decoder.head.0.gamma", dim: last)
        let head = try CausalConv3d(w, "decoder.head.2", cin: last, cout: config.pixelChannels, kernel: (3, 3, 3), padHW: 1,
                                    slots: &slots)
        headConv = taps ? try head.withTimeTaps() : head
        slotCount = slots.count
    }

    /// Loads the decoder of a Wan2.1 or Wan2.2 VAE checkpoint in either key layout (`Wan2.1_VAE.pth`,
    /// `Wan2.2_VAE.pth`, their safetensors twins, or diffusers' `AutoencoderKLWan`). Which VAE, and its widths
    /// and `zDim`, are read from the weights; every decoder key must be bound (encoder keys are ignored).
    public static func load(from source: any TensorSource, on backend: any Backend, dtype: DType = .f32,
                            config: WanVAEConfig? = nil) throws -> WanVAEDecoder {
        let layout = try WanVAEKeyLayout.detect(source.keys)
        let base = config ?? WanVAEConfig.family(keys: source.keys)
        let unused = layout == .wan ? ["encoder.", "conv1."] : ["encoder.", "quant_conv."]
        let binder = try WeightBinder(source: FilteredTensorSource(source, excluding: unused),
                                      rules: layout.rules(config: base), backend: backend, dtype: dtype)
        let decoder = try WanVAEDecoder(config: config ?? WanVAEConfig.detect(from: binder, base: base), binder: binder)
        try binder.finish()
        return decoder
    }

    // Whether the layers after the last time upsampling run their causal convs as pair + new frame on one-frame
    // slices (`CausalConv3d.withTimeTaps`), and the frames per slice: the backend's `Tuning`.

    /// Decodes one chunk of raw latents after `conv2` ([N, t, h, w, z]) into frames, continuing `cache`.
    ///
    /// After the last time upsampling every layer is causal in time with its own cache (3-frame causal
    /// convolutions; norms, SiLU and the 2D upsampling work frame by frame), so the chunk's 4 frames can
    /// go through the full-resolution stages `sliceFrames` at a time, the caches carrying each slice into
    /// the next: the same frames as the whole chunk at once (Wan's own loop feeds its causal convs chunks
    /// of any length), with a quarter of the full-resolution activations alive at a time.
    func forward(_ x: Tensor, cache: inout CausalCache, sliceFrames: Int) throws -> Tensor {
        let b = x.backend   // the stream the input lives on (the weights serve every stream)
        var y = try conv1(x, cache: &cache)                                        // [N, t, h, w, 384]
        y = try middle0(y, cache: &cache)
        y = try middleAttention(y)
        y = try middle2(y, cache: &cache)
        for stage in stages where stage.layers.lowerBound < sliceStart { y = try run(stage, y, &cache) }
        let frames = y.shape[1]
        let step = sliceFrames > 0 ? min(sliceFrames, frames) : frames
        var outputs: [Tensor] = []
        for start in stride(from: 0, to: frames, by: step) {
            var s = step == frames ? y : try b.slice(y, axis: 1, start: start, length: min(step, frames - start))
            for stage in stages where stage.layers.lowerBound >= sliceStart { s = try run(stage, s, &cache) }
            let normed = s
            s = try headConv(like: normed, cache: &cache) { try headNorm.silu(normed, into: $0) }   // [N, slice, 8h, 8w, 3 p^2]
            // Wan2.2 clamps after unpatchify (Wan2_2_VAE.decode); clamping first gives the same values.
            outputs.append(try Patchify.unpack(b.clamp(s, min: -1, max: 1), patch: config.patchSize))
        }
        return outputs.count == 1 ? outputs[0] : try b.concat(outputs, axis: 1)
    }

    /// One stage: its residual blocks and resample, plus (Wan2.2) the `DupUp3D` shortcut of the stage's input.
    private func run(_ stage: Stage, _ x: Tensor, _ cache: inout CausalCache) throws -> Tensor {
        // Wan's `first_chunk`: the stream's first chunk, when the stage's time upsampling has seen nothing yet.
        var firstChunk = false
        if case let .resample(r) = upsamples[stage.layers.upperBound - 1], r.mode == .upsample3d, r.repFirstChunk,
           let slot = r.slot, case .empty = cache.slots[slot] {
            firstChunk = true
        }
        var y = x
        for layer in upsamples[stage.layers] {
            switch layer {
            case let .residual(block): y = try block(y, cache: &cache)
            case let .resample(r): y = try r(y, cache: &cache)                     // x2 in H, W (and T)
            }
        }
        guard let shortcut = stage.shortcut, shortcut.enabled else { return y }
        return try x.backend.add(y, try shortcut(x, firstChunk: firstChunk))
    }

    /// De-normalizes DiT latents (z * std + mean, Wan's `z / (1 / std) + mean`) and applies conv2.
    func prepare(_ latents: Tensor) throws -> Tensor {
        var cache = CausalCache(count: 0)
        let b = latents.backend
        let raw = try b.add(b.mul(latents, std), mean)
        return try conv2(raw, cache: &cache)
    }

    /// A copy whose upsample3d layers skip the 'Rep' special case (tests: shows the state machine matters).
    func withoutRepFirstChunk() -> WanVAEDecoder {
        WanVAEDecoder(copying: self, upsamples: upsamples.map {
            guard case var .resample(r) = $0 else { return $0 }
            r.repFirstChunk = false
            return .resample(r)
        }, stages: stages)
    }

    /// A copy without Wan2.2's `DupUp3D` shortcuts (tests: shows they matter).
    func withoutShortcuts() -> WanVAEDecoder {
        WanVAEDecoder(copying: self, upsamples: upsamples, stages: stages.map {
            var s = $0
            s.shortcut?.enabled = false
            return s
        })
    }

    private init(copying o: WanVAEDecoder, upsamples: [UpsampleLayer], stages: [Stage]) {
        config = o.config; backend = o.backend; mean = o.mean; std = o.std; conv2 = o.conv2; conv1 = o.conv1
        middle0 = o.middle0; middleAttention = o.middleAttention; middle2 = o.middle2; self.upsamples = upsamples
        self.stages = stages; headNorm = o.headNorm; headConv = o.headConv; slotCount = o.slotCount; sliceStart = o.sliceStart
    }
}

extension WanVAEConfig {
    /// The decoder's widths before and after each stage: dim * [mult[-1]] + mult reversed.
    public var decoderDims: [Int] { ([dimMult.last ?? 1] + dimMult.reversed()).map { $0 * decoderBaseDim } }
    /// The encoder's widths: dim * [1] + mult.
    public var encoderDims: [Int] { ([1] + dimMult).map { $0 * baseDim } }

    /// Wan's key of a decoder stage's block: flat for Wan2.1 (`decoder.upsamples.N`), nested for Wan2.2
    /// (`decoder.upsamples.i.upsamples.j`, vae2_2.py `Up_ResidualBlock`).
    func decoderLayerKey(stage i: Int, block j: Int, flatIndex: Int) -> String {
        isResidual ? "decoder.upsamples.\(i).upsamples.\(j)" : "decoder.upsamples.\(flatIndex)"
    }

    /// Wan's key of an encoder stage's block (`encoder.downsamples.N`; Wan2.2 `encoder.downsamples.i.downsamples.j`).
    func encoderLayerKey(stage i: Int, block j: Int, flatIndex: Int) -> String {
        isResidual ? "encoder.downsamples.\(i).downsamples.\(j)" : "encoder.downsamples.\(flatIndex)"
    }
}
