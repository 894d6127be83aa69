import ReelCore

extension WanDiT {
    /// Every weight name of the canonical (Wan) layout with its shape.
    public static func weightShapes(_ c: WanDiTConfig) -> [(String, Shape)] {
        let d = c.dim
        var out: [(String, Shape)] = [
            ("patch_embedding.weight", [d, c.inChannels, 1, c.patch, c.patch]), ("patch_embedding.bias", [d]),
            ("text_embedding.0.weight", [d, c.textDim]), ("text_embedding.0.bias", [d]),
            ("text_embedding.2.weight", [d, d]), ("text_embedding.2.bias", [d]),
            ("time_embedding.0.weight", [d, c.freqDim]), ("time_embedding.0.bias", [d]),
            ("time_embedding.2.weight", [d, d]), ("time_embedding.2.bias", [d]),
            ("time_projection.1.weight", [6 * d, d]), ("time_projection.1.bias", [6 * d]),
            ("head.modulation", [1, 2, d]),
            ("head.head.weight", [c.patch * c.patch * c.outChannels, d]), ("head.head.bias", [c.patch * c.patch * c.outChannels]),
        ]
        for i in 0..<c.layers {
            let p = "blocks.\(i)."
            out.append((p + "modulation", [1, 6, d]))
            for a in ["self_attn", "cross_attn"] {
                for m in ["q", "k", "v", "o"] {
                    out.append(("\(p)\(a).\(m).weight", [d, d]))
                    out.append(("\(p)\(a).\(m).bias", [d]))
                }
                out.append(("\(p)\(a).norm_q.weight", [d]))
                out.append(("\(p)\(a).norm_k.weight", [d]))
            }
            if c.crossAttentionNorm {
                out.append((p + "norm3.weight", [d]))
                out.append((p + "norm3.bias", [d]))
            }
            out += [(p + "ffn.0.weight", [c.ffnDim, d]), (p + "ffn.0.bias", [c.ffnDim]),
                    (p + "ffn.2.weight", [d, c.ffnDim]), (p + "ffn.2.bias", [d])]
        }
        return out
    }

    /// Random weights of the real architecture (for benchmarks and tests where no trained weights
    /// exist): matrices with fan-in scaling, a weak patch embedding, q/k norm weights near 1.5 and
    /// small modulations, so outputs depend on the prompt and on the cached history.
    public static func randomWeights(_ c: WanDiTConfig, on backend: any Backend, seed: UInt64 = 0,
                                     dtype: DType = .f32) throws -> InMemoryTensors {
        var tensors: [String: Tensor] = [:]
        for (index, (name, shape)) in weightShapes(c).enumerated() {
            let noise = try backend.randomNormal(shape, seed: seed &+ UInt64(index) &* 0x9E37_79B9, offset: 0, dtype: .f32)
            let fanIn = shape.count / shape[0]
            let t: Tensor
            if name.hasSuffix(".bias") {
                t = try backend.affine(noise, scale: 0.02, bias: 0)
            } else if name.contains("norm_q") || name.contains("norm_k") {
                t = try backend.affine(noise, scale: 0.1, bias: 1.5)
            } else if name.hasSuffix("norm3.weight") {
                t = try backend.affine(noise, scale: 0.1, bias: 1)
            } else if name.hasSuffix("modulation") {
                t = try backend.affine(noise, scale: 0.1, bias: 0)
            } else {
                let weak: Float = name.hasPrefix("patch_embedding") ? 0.05 : 1
                t = try backend.affine(noise, scale: weak / Float(fanIn).squareRoot(), bias: 0)
            }
            tensors[name] = dtype == .f32 ? t : try backend.cast(t, to: dtype)
        }
        return InMemoryTensors(tensors)
    }
}

extension UMT5Encoder {
    /// Random weights of the umT5 encoder architecture in Wan's layout (benchmarks and tests).
    public static func randomWeights(_ c: UMT5Config, on backend: any Backend, seed: UInt64 = 0,
                                     dtype: DType = .f32) throws -> InMemoryTensors {
        let inner = c.heads * c.headDim
        var shapes: [(String, Shape)] = [("token_embedding.weight", [c.vocabulary, c.dim]), ("norm.weight", [c.dim])]
        for i in 0..<c.layers {
            let p = "blocks.\(i)."
            shapes += [(p + "norm1.weight", [c.dim]), (p + "norm2.weight", [c.dim]),
                       (p + "attn.q.weight", [inner, c.dim]), (p + "attn.k.weight", [inner, c.dim]),
                       (p + "attn.v.weight", [inner, c.dim]), (p + "attn.o.weight", [c.dim, inner]),
                       (p + "pos_embedding.embedding.weight", [c.buckets, c.heads]),
                       (p + "ffn.gate.0.weight", [c.ffnDim, c.dim]), (p + "ffn.fc1.weight", [c.ffnDim, c.dim]),
                       (p + "ffn.fc2.weight", [c.dim, c.ffnDim])]
        }
        var tensors: [String: Tensor] = [:]
        for (index, (name, shape)) in shapes.enumerated() {
            let noise = try backend.randomNormal(shape, seed: seed &+ 0x5EED &+ UInt64(index) &* 0x9E37_79B9, offset: 0, dtype: .f32)
            let t: Tensor = name.hasSuffix("norm1.weight") || name.hasSuffix("norm2.weight") || name == "norm.weight"
                ? try backend.affine(noise, scale: 0.1, bias: 1)
                : name.hasPrefix("token_embedding") || name.contains("pos_embedding")
                    ? noise : try backend.affine(noise, scale: 1 / Float(shape[1]).squareRoot(), bias: 0)
            tensors[name] = dtype == .f32 ? t : try backend.cast(t, to: dtype)
        }
        return InMemoryTensors(tensors)
    }
}

extension WanDiT {
    /// Weights of one transformer block (`blocks.N.*`): what a streamed block uploads, in elements.
    public static func blockParameters(_ c: WanDiTConfig) -> Int {
        var one = c
        one.layers = 1
        return weightShapes(one).filter { $0.0.hasPrefix("blocks.0.") }.reduce(0) { $0 + $1.1.count }
    }
}
