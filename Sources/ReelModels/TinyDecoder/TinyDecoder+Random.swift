import ReelCore

extension TinyDecoder {
    /// Every decoder weight of a TAEHV checkpoint (taew2_1 layout: `decoder.N...`, PyTorch shapes; taew2_2: 48
    /// latent channels, patch size 2).
    public static func weightShapes(channels c: [Int] = [256, 128, 64, 64], latentChannels z: Int = 16, patchSize p: Int = 1,
                                    timeUpscale: [Int] = [1, 2, 2]) -> [(String, Shape)] {
        var out: [(String, Shape)] = [("decoder.1.weight", [c[0], z, 3, 3]), ("decoder.1.bias", [c[0]])]
        for s in 0..<3 {
            let base = 3 + 6 * s, n = c[s]
            for j in 0..<3 {
                let p = "decoder.\(base + j).conv."
                out += [(p + "0.weight", [n, 2 * n, 3, 3]), (p + "0.bias", [n]), (p + "2.weight", [n, n, 3, 3]),
                        (p + "2.bias", [n]), (p + "4.weight", [n, n, 3, 3]), (p + "4.bias", [n])]
            }
            out.append(("decoder.\(base + 4).conv.weight", [n * timeUpscale[s], n, 1, 1]))
            out.append(("decoder.\(base + 5).weight", [c[s + 1], n, 3, 3]))
        }
        out += [("decoder.22.weight", [3 * p * p, c[3], 3, 3]), ("decoder.22.bias", [3 * p * p])]
        return out
    }

    /// Random weights of the real tiny decoder (benchmarks): fan-in scaled convolutions. `latentChannels` 48 and
    /// `patchSize` 2 make taew2_2's.
    public static func randomWeights(channels: [Int] = [256, 128, 64, 64], latentChannels: Int = 16, patchSize: Int = 1,
                                     on backend: any Backend, seed: UInt64 = 0, dtype: DType = .f32) throws -> InMemoryTensors {
        var tensors: [String: Tensor] = [:]
        let shapes = weightShapes(channels: channels, latentChannels: latentChannels, patchSize: patchSize)
        for (index, (name, shape)) in shapes.enumerated() {
            let noise = try backend.randomNormal(shape, seed: seed &+ 0x7AE &+ UInt64(index) &* 0x9E37_79B9, offset: 0, dtype: .f32)
            let fanIn = name.hasSuffix(".bias") ? 1 : shape.count / shape[0]
            let t = try backend.affine(noise, scale: name.hasSuffix(".bias") ? 0.01 : 1 / Float(fanIn).squareRoot(), bias: 0)
            tensors[name] = dtype == .f32 ? t : try backend.cast(t, to: dtype)
        }
        return InMemoryTensors(tensors)
    }

    /// FLOPs of decoding one latent frame in steady state (4 video frames) at latent size h x w (the last conv makes
    /// 3 x p x p channels at 8h x 8w, shuffled into 8ph x 8pw pixels).
    public static func flopsPerLatentFrame(channels c: [Int] = [256, 128, 64, 64], latentChannels z: Int = 16, patchSize p: Int = 1,
                                           height h: Int, width w: Int, timeUpscale: [Int] = [1, 2, 2]) -> Double {
        var flops = 0.0
        var (pixels, frames) = (Double(h * w), 1.0)
        flops += 2 * Double(c[0] * z * 9) * pixels
        for s in 0..<3 {
            let n = Double(c[s])
            flops += 3 * 72 * n * n * pixels * frames                     // three MemBlocks
            pixels *= 4                                                     // Upsample x2
            flops += 2 * n * n * Double(timeUpscale[s]) * pixels * frames   // TGrow (1x1 conv)
            frames *= Double(timeUpscale[s])
            flops += 2 * n * Double(c[s + 1]) * 9 * pixels * frames         // stage conv
        }
        flops += 2 * Double(c[3] * 3 * p * p * 9) * pixels * frames
        return flops
    }
}
