import ReelCore

/// The Wan2.1 VAE encoder (Wan2.1 `Encoder3d` plus the `conv1` quant conv and latent normalization):
/// video `[N, 1 + 4k, H, W, 3]` in [-1, 1] -> normalized latent means `[N, 1 + k, H/8, W/8, z]`.
///
/// Like Wan's `encode`, it runs frame 0 alone and then chunks of 4 frames through per-conv caches
/// (the first chunk passes the temporal downsamples unchanged). Structure (Wan2.1 sizes):
/// conv1 3 -> 96; stage 0: 2 Res(96) + downsample2d; stage 1: Res(96 -> 192), Res(192) + downsample3d;
/// stage 2: Res(192 -> 384), Res(384) + downsample3d; stage 3: 2 Res(384); middle Res, Attn, Res;
/// head RMS_norm, SiLU, conv 384 -> 2z; then conv1 (2z -> 2z), of which the first z channels are the mean.
///
/// Wan2.2 (`isResidual`, vae2_2.py `Encoder3d`): the video is first packed into 2x2 patches (12 channels), then
/// conv1 12 -> 160; each stage (`Down_ResidualBlock`) is 2 Res + its resample (stage 0 downsample2d, stages 1 and 2
/// downsample3d, stage 3 none) plus an `AvgDown3D` shortcut of the stage's input; widths 160, 160, 320, 640, 640;
/// head conv 640 -> 96. Video `[N, 1 + 4k, H, W, 3]` -> latents `[N, 1 + k, H/16, W/16, 48]`.
public final class WanVAEEncoder: @unchecked Sendable {
    public let config: WanVAEConfig
    public let backend: any Backend
    /// The dtype its weights compute in; frames in another dtype are cast to it first.
    public let dtype: DType
    let mean: Tensor
    let invStd: Tensor
    let quantConv: CausalConv3d
    let conv1: CausalConv3d
    let downsamples: [DownsampleLayer]
    /// Each stage's layers in `downsamples` and (Wan2.2) the shortcut around them.
    let stages: [Stage]
    let middle0: ResidualBlock
    let middleAttention: AttentionBlock
    let middle2: ResidualBlock
    let headNorm: ChannelRMSNorm
    let headConv: CausalConv3d
    let slotCount: Int

    enum DownsampleLayer {
        case residual(ResidualBlock)
        case resample(Resample)
    }

    struct Stage {
        let layers: Range<Int>
        var shortcut: AvgDown3D?
    }

    init(config: WanVAEConfig, binder w: WeightBinder) throws {
        try config.validate()
        self.config = config
        backend = w.backend
        dtype = w.dtype
        let z = config.zDim
        mean = try w.backend.tensor(config.latentsMean, shape: [z], dtype: w.dtype)
        invStd = try w.backend.tensor(config.latentsStd.map { 1 / $0 }, shape: [z], dtype: w.dtype)
        var slots = SlotAllocator()
        quantConv = try CausalConv3d(w, "conv1", cin: 2 * z, cout: 2 * z, kernel: (1, 1, 1), padHW: 0, slots: &slots)

        // dims = dim * [1] + mult: [96, 96, 192, 384, 384] for Wan2.1, [160, 160, 320, 640, 640] for Wan2.2
        let dims = config.encoderDims
        conv1 = try CausalConv3d(w, "encoder.conv1", cin: config.pixelChannels, cout: dims[0], kernel: (3, 3, 3), padHW: 1,
                                 slots: &slots)
        var layers: [DownsampleLayer] = [], stageList: [Stage] = []
        let stages = config.dimMult.count
        for i in 0..<stages {
            var cin = dims[i]
            let cout = dims[i + 1], first = layers.count
            for j in 0..<config.numResBlocks {
                let key = config.encoderLayerKey(stage: i, block: j, flatIndex: layers.count)
                layers.append(.residual(try ResidualBlock(w, key, cin: cin, cout: cout, slots: &slots)))
                cin = cout
            }
            let down = i != stages - 1, temporal = down && config.temporalDownsample[i]
            if down {
                let mode: Resample.Mode = temporal ? .downsample3d : .downsample2d
                let key = config.encoderLayerKey(stage: i, block: config.numResBlocks, flatIndex: layers.count)
                layers.append(.resample(try Resample(w, key, dim: cout, mode: mode, slots: &slots)))
            }
            let shortcut = config.isResidual
                ? AvgDown3D(cin: dims[i], cout: cout, factorT: temporal ? 2 : 1, factorS: down ? 2 : 1) : nil
            stageList.append(Stage(layers: first..<layers.count, shortcut: shortcut))
        }
        downsamples = layers
        self.stages = stageList
        let top = dims[stages]
        middle0 = try ResidualBlock(w, "encoder.middle.0", cin: top, cout: top, slots: &slots)
        middleAttention = try AttentionBlock(w, "encoder.middle.1", dim: top)
        middle2 = try ResidualBlock(w, "encoder.middle.2", cin: top, cout: top, slots: &slots)
        headNorm = try ChannelRMSNorm(w, "encoder.head.0.gamma", dim: top)
        headConv = try CausalConv3d(w, "encoder.head.2", cin: top, cout: 2 * z, kernel: (3, 3, 3), padHW: 1, slots: &slots)
        slotCount = slots.count
    }

    /// Loads the encoder of a Wan2.1 or Wan2.2 VAE checkpoint in either key layout (which VAE is read from the
    /// weights); decoder keys are ignored.
    public static func load(from source: any TensorSource, on backend: any Backend, dtype: DType = .f32,
                            config: WanVAEConfig? = nil) throws -> WanVAEEncoder {
        let layout = try WanVAEKeyLayout.detect(source.keys)
        let base = config ?? WanVAEConfig.family(keys: source.keys)
        let unused = layout == .wan ? ["decoder.", "conv2."] : ["decoder.", "post_quant_conv."]
        let binder = try WeightBinder(source: FilteredTensorSource(source, excluding: unused),
                                      rules: layout.rules(config: base), backend: backend, dtype: dtype)
        let encoder = try WanVAEEncoder(config: config ?? WanVAEConfig.detect(from: binder, base: base), binder: binder)
        try binder.finish()
        return encoder
    }

    /// Encodes `video [N, T, H, W, 3]` in [-1, 1], T = 1 + 4k, H and W multiples of the spatial stride s (8; 16 for
    /// Wan2.2), into the normalized latent means `[N, 1 + k, H/s, W/s, z]` ((mu - mean) / std, as Wan's `encode`).
    public func encode(_ video: Tensor) throws -> Tensor {
        let ts = config.temporalStride
        try require(video.rank == 5 && video.shape[1] >= 1 && (video.shape[1] - 1) % ts == 0, "WanVAEEncoder.encode",
                    "\(video.shape): the Wan VAE encodes videos [N, T, H, W, 3] of 1 + \(ts)k frames (1, 5, 9, ...)")
        let stream = StreamingVAEEncoder(model: self)
        guard let latents = try stream.encode(video) else {
            throw ReelError.invalidArgument(op: "WanVAEEncoder.encode", message: "no latents for \(video.shape)")
        }
        return latents
    }

    /// Encoder moments `[N, t, h, w, 2z]` -> normalized means `[N, t, h, w, z]`.
    func latents(fromMoments moments: Tensor) throws -> Tensor {
        let b = backend
        return try b.mul(b.binary(.sub, try means(fromMoments: moments), mean), invStd)
    }

    /// The raw means `mu` (before the latent normalization) of the encoder's moments.
    func means(fromMoments moments: Tensor) throws -> Tensor {
        var empty = CausalCache(count: 0)
        let q = try quantConv(moments, cache: &empty)
        return try backend.slice(q, axis: 4, start: 0, length: config.zDim)
    }

    /// A copy without Wan2.2's `AvgDown3D` shortcuts (tests: shows they matter).
    func withoutShortcuts() -> WanVAEEncoder {
        WanVAEEncoder(copying: self, stages: stages.map {
            var s = $0
            s.shortcut?.enabled = false
            return s
        })
    }

    private init(copying o: WanVAEEncoder, stages: [Stage]) {
        config = o.config; backend = o.backend; dtype = o.dtype; mean = o.mean; invStd = o.invStd; quantConv = o.quantConv; conv1 = o.conv1
        downsamples = o.downsamples; self.stages = stages; middle0 = o.middle0; middleAttention = o.middleAttention
        middle2 = o.middle2; headNorm = o.headNorm; headConv = o.headConv; slotCount = o.slotCount
    }

    /// Encodes one chunk of frames `[N, t, H, W, 3]` (1 frame first, then 4 at a time) into moments, continuing `cache`.
    func forward(_ x: Tensor, cache: inout CausalCache) throws -> Tensor {
        var y = try conv1(Patchify.pack(x, patch: config.patchSize), cache: &cache)   // [N, t, H/p, W/p, dim]
        for stage in stages {
            let input = y
            for layer in downsamples[stage.layers] {
                switch layer {
                case let .residual(block): y = try block(y, cache: &cache)
                case let .resample(r): y = try r(y, cache: &cache)               // /2 in H, W (and T)
                }
            }
            if let shortcut = stage.shortcut, shortcut.enabled { y = try input.backend.add(y, try shortcut(input)) }
        }
        y = try middle0(y, cache: &cache)
        y = try middleAttention(y)
        y = try middle2(y, cache: &cache)
        y = try headNorm.silu(y)
        return try headConv(y, cache: &cache)
    }
}
