import ReelCore

/// The TAEHV tiny video decoder (madebyollin/taehv `taehv.py`, weights `taew2_1.pth` for Wan2.1):
/// 2D convs over each frame, MemBlocks that also see the previous frame's input, and TGrow layers
/// that multiply frames. ~11M parameters, ~25x cheaper than the Wan VAE, output close to it.
///
/// It takes the normalized latents directly. Layers (`decoder.N` in the checkpoint):
/// ```
/// 0 Clamp (tanh(x/3)*3), 1 conv z->c0, 2 ReLU, 3-5 MemBlock(c0), 6 Upsample x2, 7 TGrow(c0, 1), 8 conv c0->c1,
/// 9-11 MemBlock(c1), 12 Upsample x2, 13 TGrow(c1, 2), 14 conv c1->c2,
/// 15-17 MemBlock(c2), 18 Upsample x2, 19 TGrow(c2, 2), 20 conv c2->c3, 21 ReLU, 22 conv c3->3
/// ```
/// with c = [256, 128, 64, 64] in taew2_1 (read from the weights). taew2_2 (Wan2.2's 48-channel latents) is the
/// same decoder with `patch_size` 2: conv 22 makes 3 x 2 x 2 channels, pixel-shuffled into frames twice as wide
/// and high (16 pixels a latent); both are read from the weights. Immutable; the per-stream state lives in
/// `StreamingTinyDecoder`.
public final class TinyDecoder: @unchecked Sendable {
    public let backend: any Backend
    /// Latent channels (16; taew2_2: 48).
    public let latentChannels: Int
    /// Pixels a side that the last conv's channels are shuffled into (taew2_1: 1; taew2_2: 2).
    public let patchSize: Int
    /// Channels of the four stages.
    public let channels: [Int]
    /// Frames each TGrow makes of one (taew2_1: [1, 2, 2], so 4 frames per latent).
    public let timeUpscale: [Int]
    let stages: [Stage]
    let inputConv: TAEHVConv
    let outputConv: TAEHVConv

    /// Three MemBlocks, Upsample x2, TGrow, then the conv into the next stage.
    struct Stage {
        let blocks: [TAEHVMemBlock]
        let tgrow: Tensor    // [C * stride, C] (1x1 conv without bias)
        let stride: Int
        let channels: Int
        let conv: TAEHVConv  // no bias
    }

    init(binder w: WeightBinder, timeUpscale: [Int]) throws {
        backend = w.backend
        guard let first = w.shape("decoder.1.weight"), first.rank == 4 else {
            throw ReelError.weights(message: "no decoder.1.weight: not a TAEHV checkpoint")
        }
        if w.contains("decoder.1.conv.0.weight") || !w.contains("decoder.3.conv.0.weight") {
            throw ReelError.weights(message: "unsupported TAEHV variant (Reel reads the base decoder of taew2_1, not the 'super' one)")
        }
        latentChannels = first[1]
        var c = [first[0]]
        for index in [8, 14, 20] {
            guard let s = w.shape("decoder.\(index).weight"), s.rank == 4 else {
                throw ReelError.weights(message: "missing decoder.\(index).weight (TAEHV stage conv)")
            }
            c.append(s[0])
        }
        channels = c
        self.timeUpscale = timeUpscale
        guard let out = w.shape("decoder.22.weight"), out.rank == 4 else {
            throw ReelError.weights(message: "missing decoder.22.weight (TAEHV output conv)")
        }
        guard let patch = [1, 2].first(where: { 3 * $0 * $0 == out[0] }) else {
            throw ReelError.weights(message: "decoder outputs \(out[0]) channels; Reel's tiny decoder reads 3 (taew2_1) "
                                    + "or 12 (patch size 2, taew2_2)")
        }
        patchSize = patch

        inputConv = try w.taehvConv("decoder.1", latentChannels, c[0])
        var stages: [Stage] = []
        for s in 0..<3 {
            let base = 3 + 6 * s
            let n = c[s]
            let blocks = try (0..<3).map { try w.taehvMemBlock("decoder.\(base + $0)", n) }
            // TGrow: a checkpoint trained with more frames per step keeps its last n*stride outputs
            // (taehv's patch_tgrow_layers).
            let stride = timeUpscale[s]
            let tgName = "decoder.\(base + 4).conv.weight"
            guard let tg = w.shape(tgName), tg.rank == 4, tg[1] == n, tg[2] == 1, tg[3] == 1,
                  tg[0] % n == 0, tg[0] >= n * stride else {
                throw ReelError.weights(message: "\(tgName) has shape \(w.shape(tgName).map { "\($0)" } ?? "none"), "
                    + "expected [\(n * stride), \(n), 1, 1] (or more rows)")
            }
            var tgrow = try w.exactTensor(tgName, tg.dims).reshaped([tg[0], n])
            if tg[0] > n * stride {
                tgrow = try backend.slice(tgrow, axis: 0, start: tg[0] - n * stride, length: n * stride)
            }
            stages.append(Stage(blocks: blocks, tgrow: tgrow, stride: stride, channels: n,
                                conv: try w.taehvConv("decoder.\(base + 5)", n, c[s + 1], bias: false)))
        }
        self.stages = stages
        outputConv = try w.taehvConv("decoder.22", c[3], 3 * patch * patch)
    }

    /// Loads the decoder of a TAEHV checkpoint (`taew2_1.pth` or its safetensors twin); encoder
    /// keys are ignored, every decoder key must be bound.
    public static func load(from source: any TensorSource, on backend: any Backend, dtype: DType = .f32,
                            timeUpscale: [Int] = [1, 2, 2]) throws -> TinyDecoder {
        try require(timeUpscale.count == 3 && timeUpscale.allSatisfy { $0 == 1 || $0 == 2 }, "TinyDecoder.load",
                    "timeUpscale needs 3 entries of 1 or 2, got \(timeUpscale)")
        let binder = try WeightBinder(source: FilteredTensorSource(source, excluding: ["encoder."]), rules: [],
                                      backend: backend, dtype: dtype)
        let model = try TinyDecoder(binder: binder, timeUpscale: timeUpscale)
        try binder.finish()
        return model
    }

    /// Raw frames made from the first latent frames that `decode_video` trims (t_upscale - 1 = 3).
    public var framesToTrim: Int { timeUpscale.reduce(1, *) - 1 }

    /// Decodes a block `[N, T, h, w, z]` into raw frames `[N, T * 4, 8ph, 8pw, 3]` in [0, 1] (untrimmed, p the patch size),
    /// continuing the MemBlocks' past frames in `memory` (one slot per MemBlock).
    func forward(_ latents: Tensor, memory: inout [Tensor?]) throws -> Tensor {
        let b = latents.backend   // the stream the input lives on (the weights serve every stream)
        var x = try b.affine(b.unary(.tanh, b.affine(latents, scale: 1.0 / 3, bias: 0)), scale: 3, bias: 0)
        x = try b.unary(.relu, inputConv(x))                                       // [N, T, h, w, c0]
        var slot = 0
        for stage in stages {
            for block in stage.blocks {
                x = try block(x, memory: &memory[slot])
                slot += 1
            }
            x = try b.upsampleNearest(x, scaleH: 2, scaleW: 2)                    // [N, T, 2h, 2w, C]
            x = try tgrow(x, stage)                                                // [N, T * stride, 2h, 2w, C]
            x = try stage.conv(x)
        }
        x = try outputConv(b.unary(.relu, x))                                      // [N, T', H, W, 3 p p]
        // taehv clamps after the pixel shuffle; clamping first gives the same values.
        return try Patchify.pixelShuffle(b.clamp(x, min: 0, max: 1), patch: patchSize)
    }

    /// 1x1 conv C -> C*stride; output frame t*stride + s takes channels [s*C, (s+1)*C).
    private func tgrow(_ x: Tensor, _ stage: Stage) throws -> Tensor {
        let b = x.backend
        let (n, t, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        let y = try b.matmul(x.reshaped([n * t * h * w, c]), stage.tgrow, transposeB: true, bias: nil)
            .reshaped([n, t, h, w, c * stage.stride])                              // [N, T, H, W, C*stride]
        guard stage.stride > 1 else { return y }
        let split = try y.reshaped([n, t, h, w, stage.stride, c])
        return try b.permute(split, [0, 1, 4, 2, 3, 5]).reshaped([n, t * stage.stride, h, w, c])
    }

    /// MemBlocks, i.e. slots of stream memory.
    var memBlockCount: Int { stages.reduce(0) { $0 + $1.blocks.count } }
}
