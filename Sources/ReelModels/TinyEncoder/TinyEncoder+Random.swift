import ReelCore

extension TinyEncoder {
    /// Every encoder weight of a TAEHV checkpoint (taew2_1 layout: `encoder.N...`, PyTorch shapes).
    public static func weightShapes(channels c: Int = 64, latentChannels z: Int = 16,
                                    timeDownscale: [Int] = [2, 2, 1]) -> [(String, Shape)] {
        var out: [(String, Shape)] = [("encoder.0.weight", [c, 3, 3, 3]), ("encoder.0.bias", [c])]
        for s in 0..<3 {
            let base = 2 + 5 * s
            out.append(("encoder.\(base).conv.weight", [c, c * timeDownscale[s], 1, 1]))
            out.append(("encoder.\(base + 1).weight", [c, c, 3, 3]))
            for j in 2..<5 {
                let p = "encoder.\(base + j).conv."
                out += [(p + "0.weight", [c, 2 * c, 3, 3]), (p + "0.bias", [c]), (p + "2.weight", [c, c, 3, 3]),
                        (p + "2.bias", [c]), (p + "4.weight", [c, c, 3, 3]), (p + "4.bias", [c])]
            }
        }
        out += [("encoder.17.weight", [z, c, 3, 3]), ("encoder.17.bias", [z])]
        return out
    }

    /// Random weights of the tiny encoder (tests, benchmarks): fan-in scaled convolutions.
    public static func randomWeights(channels: Int = 64, latentChannels: Int = 16, on backend: any Backend,
                                     seed: UInt64 = 0, dtype: DType = .f32) throws -> InMemoryTensors {
        var tensors: [String: Tensor] = [:]
        let shapes = weightShapes(channels: channels, latentChannels: latentChannels)
        for (index, (name, shape)) in shapes.enumerated() {
            let noise = try backend.randomNormal(shape, seed: seed &+ 0xE2C &+ UInt64(index) &* 0x9E37_79B9, offset: 0,
                                                 dtype: .f32)
            let isBias = name.hasSuffix(".bias")
            let fanIn = isBias ? 1 : shape.count / shape[0]
            let t = try backend.affine(noise, scale: isBias ? 0.01 : 1 / Float(fanIn).squareRoot(), bias: 0)
            tensors[name] = dtype == .f32 ? t : try backend.cast(t, to: dtype)
        }
        return InMemoryTensors(tensors)
    }

    /// FLOPs of encoding one latent frame in steady state (4 video frames) at latent size h x w
    /// (frames 8h x 8w): multiply-adds count 2.
    public static func flopsPerLatentFrame(channels c: Int = 64, latentChannels z: Int = 16,
                                           height h: Int, width w: Int, timeDownscale: [Int] = [2, 2, 1]) -> Double {
        let c = Double(c)
        var (pixels, frames) = (Double(64 * h * w), Double(timeDownscale.reduce(1, *)))
        var flops = 2 * c * 3 * 9 * pixels * frames                              // input conv
        for stride in timeDownscale {
            frames /= Double(stride)
            flops += 2 * c * c * Double(stride) * pixels * frames              // TPool (1x1 conv)
            pixels /= 4
            flops += 2 * c * c * 9 * pixels * frames                           // stride-2 conv
            flops += 3 * 72 * c * c * pixels * frames                          // three MemBlocks
        }
        flops += 2 * c * Double(z) * 9 * pixels * frames                       // output conv
        return flops
    }
}
