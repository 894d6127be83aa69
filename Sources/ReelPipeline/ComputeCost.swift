import ReelCore
import ReelModels

/// Floating-point operations of the models, for benchmark floors (multiply-add = 2 FLOPs).
public enum ComputeCost {
    /// One DiT forward over `queries` tokens attending to `keys` cached tokens (and the prompt's
    /// `textLength` tokens, whose keys and values are cached per prompt).
    public static func ditForward(_ c: WanDiTConfig, queries q: Int, keys k: Int) -> Double {
        let (d, f, l) = (Double(c.dim), Double(c.ffnDim), Double(c.layers))
        let (q, k, t) = (Double(q), Double(k), Double(c.textLength))
        let linear = 2 * q * (6 * d * d + 2 * d * f)          // self q,k,v,o + cross q,o + FFN
        let attention = 4 * q * k * d + 4 * q * t * d         // self + cross: QK^T and PV
        let io = 2 * q * d * Double(c.patch * c.patch) * Double(c.inChannels + c.outChannels)
        return l * (linear + attention) + io
    }

    /// One steady-state block: each denoising step and the clean pass attend to the full window.
    public static func ditBlock(_ c: WanDiTConfig, schedule: StreamingSchedule, tokensPerFrame: Int) -> Double {
        let q = schedule.framesPerBlock * tokensPerFrame
        let k = schedule.attentionFrames * tokensPerFrame
        return Double(schedule.denoisingSteps.count + 1) * ditForward(c, queries: q, keys: k)
    }

    /// Wan VAE decoding of one latent frame in steady state (4 video frames) at latent size h x w (Wan2.1 or
    /// Wan2.2; the parameter-free shortcuts and the patch unpacking are not counted).
    public static func vaeDecodeLatentFrame(_ c: WanVAEConfig, height h: Int, width w: Int) -> Double {
        var count = ConvCount()
        func conv(_ cout: Int, _ cin: Int, _ k: Int, pixels: Int, frames: Int) { count.conv(cout, cin, k, pixels: pixels, frames: frames) }
        func residual(_ cin: Int, _ cout: Int, pixels: Int, frames: Int) { count.residual(cin, cout, pixels: pixels, frames: frames) }
        let dims = c.decoderDims
        var (pixels, frames) = (h * w, 1)
        conv(c.zDim, c.zDim, 1, pixels: pixels, frames: 1)
        conv(dims[0], c.zDim, 27, pixels: pixels, frames: 1)
        residual(dims[0], dims[0], pixels: pixels, frames: 1)
        let n = Double(pixels), cm = Double(dims[0])
        count.flops += 2 * n * cm * cm * 4 + 4 * n * n * cm  // attention: qkv + proj, QK^T + PV
        residual(dims[0], dims[0], pixels: pixels, frames: 1)
        for i in 0..<c.dimMult.count {
            var cin = i == 0 || c.isResidual ? dims[i] : dims[i] / 2
            let cout = dims[i + 1]
            for _ in 0...c.numResBlocks {
                residual(cin, cout, pixels: pixels, frames: frames)
                cin = cout
            }
            if i != c.dimMult.count - 1 {
                if c.temporalUpsample[i] {
                    conv(2 * cout, cout, 3, pixels: pixels, frames: frames)
                    frames *= 2
                }
                pixels *= 4
                conv(c.isResidual ? cout : cout / 2, cout, 9, pixels: pixels, frames: frames)
            }
        }
        conv(c.pixelChannels, dims[c.dimMult.count], 27, pixels: pixels, frames: frames)
        return count.flops
    }
    /// Wan VAE encoding of one latent frame in steady state (4 video frames in) at latent size h x w (Wan2.1 or
    /// Wan2.2; the parameter-free shortcuts and the patch packing are not counted).
    public static func vaeEncodeLatentFrame(_ c: WanVAEConfig, height h: Int, width w: Int) -> Double {
        var count = ConvCount()
        func conv(_ cout: Int, _ cin: Int, _ k: Int, pixels: Int, frames: Int) { count.conv(cout, cin, k, pixels: pixels, frames: frames) }
        func residual(_ cin: Int, _ cout: Int, pixels: Int, frames: Int) { count.residual(cin, cout, pixels: pixels, frames: frames) }
        let dims = c.encoderDims, stages = c.dimMult.count
        let scale = c.spatialStride / c.patchSize
        var (pixels, frames) = (h * scale * w * scale, c.temporalStride)
        conv(dims[0], c.pixelChannels, 27, pixels: pixels, frames: frames)
        for i in 0..<stages {
            var cin = dims[i]
            let cout = dims[i + 1]
            for _ in 0..<c.numResBlocks {
                residual(cin, cout, pixels: pixels, frames: frames)
                cin = cout
            }
            if i != stages - 1 {
                pixels /= 4
                conv(cout, cout, 9, pixels: pixels, frames: frames)              // 3x3, stride 2
                if c.temporalDownsample[i] {
                    frames /= 2
                    conv(cout, cout, 3, pixels: pixels, frames: frames)          // 3x1x1, stride 2 in time
                }
            }
        }
        let top = dims[stages], n = Double(pixels), cm = Double(top)
        residual(top, top, pixels: pixels, frames: frames)
        count.flops += 2 * n * cm * cm * 4 + 4 * n * n * cm  // attention: qkv + proj, QK^T + PV
        residual(top, top, pixels: pixels, frames: frames)
        conv(2 * c.zDim, top, 27, pixels: pixels, frames: frames)
        conv(2 * c.zDim, 2 * c.zDim, 1, pixels: pixels, frames: frames)
        return count.flops
    }
}

/// FLOPs of the Wan VAE's convolutions, counted layer by layer.
private struct ConvCount {
    var flops = 0.0

    /// A convolution of `k` taps from `cin` to `cout` channels over `pixels` x `frames` outputs.
    mutating func conv(_ cout: Int, _ cin: Int, _ k: Int, pixels: Int, frames: Int) {
        flops += 2 * Double(cout * cin * k) * Double(pixels) * Double(frames)
    }

    /// A residual block: two 3x3x3 convolutions and, between widths, a 1x1x1 shortcut.
    mutating func residual(_ cin: Int, _ cout: Int, pixels: Int, frames: Int) {
        conv(cout, cin, 27, pixels: pixels, frames: frames)
        conv(cout, cout, 27, pixels: pixels, frames: frames)
        if cin != cout { conv(cout, cin, 1, pixels: pixels, frames: frames) }
    }
}
