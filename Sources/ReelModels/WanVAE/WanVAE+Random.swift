import ReelCore

/// Shapes of the Wan VAE's layers in Wan's key layout (PyTorch shapes), shared by the encoder's and decoder's lists.
struct WanVAEShapeList {
    var out: [(String, Shape)] = []
    mutating func conv(_ p: String, _ cout: Int, _ cin: Int, _ k: (Int, Int, Int)) {
        out += [(p + ".weight", [cout, cin, k.0, k.1, k.2]), (p + ".bias", [cout])]
    }
    mutating func residual(_ p: String, _ cin: Int, _ cout: Int) {
        out.append((p + ".residual.0.gamma", [cin, 1, 1, 1]))
        conv(p + ".residual.2", cout, cin, (3, 3, 3))
        out.append((p + ".residual.3.gamma", [cout, 1, 1, 1]))
        conv(p + ".residual.6", cout, cout, (3, 3, 3))
        if cin != cout { conv(p + ".shortcut", cout, cin, (1, 1, 1)) }
    }
    mutating func attention(_ p: String, _ dim: Int) {
        out += [(p + ".norm.gamma", [dim, 1, 1]),
                (p + ".to_qkv.weight", [3 * dim, dim, 1, 1]), (p + ".to_qkv.bias", [3 * dim]),
                (p + ".proj.weight", [dim, dim, 1, 1]), (p + ".proj.bias", [dim])]
    }

    /// Random weights for these shapes (benchmarks): fan-in scaled convolutions, unit norm gammas.
    func randomWeights(on backend: any Backend, seed: UInt64, dtype: DType) throws -> InMemoryTensors {
        var tensors: [String: Tensor] = [:]
        for (index, (name, shape)) in out.enumerated() {
            let t: Tensor
            if name.hasSuffix("gamma") {
                t = try backend.affine(try backend.zeros(shape), scale: 1, bias: 1)
            } else {
                let noise = try backend.randomNormal(shape, seed: seed &+ UInt64(index) &* 0x9E37_79B9, offset: 0, dtype: .f32)
                let fanIn = name.hasSuffix(".bias") ? 1 : shape.count / shape[0]
                t = try backend.affine(noise, scale: name.hasSuffix(".bias") ? 0.01 : 1 / Float(fanIn).squareRoot(), bias: 0)
            }
            tensors[name] = dtype == .f32 ? t : try backend.cast(t, to: dtype)
        }
        return InMemoryTensors(tensors)
    }
}

extension WanVAEDecoder {
    /// Every decoder weight (Wan's key layout, PyTorch shapes) of a configuration.
    public static func weightShapes(_ c: WanVAEConfig) -> [(String, Shape)] { shapeList(c).out }

    static func shapeList(_ c: WanVAEConfig) -> WanVAEShapeList {
        var l = WanVAEShapeList()
        let z = c.zDim
        l.conv("conv2", z, z, (1, 1, 1))
        let dims = c.decoderDims
        l.conv("decoder.conv1", dims[0], z, (3, 3, 3))
        l.residual("decoder.middle.0", dims[0], dims[0])
        l.attention("decoder.middle.1", dims[0])
        l.residual("decoder.middle.2", dims[0], dims[0])
        var index = 0
        for i in 0..<c.dimMult.count {
            var cin = i == 0 || c.isResidual ? dims[i] : dims[i] / 2
            let cout = dims[i + 1]
            for j in 0...c.numResBlocks {
                l.residual(c.decoderLayerKey(stage: i, block: j, flatIndex: index), cin, cout)
                cin = cout
                index += 1
            }
            if i != c.dimMult.count - 1 {
                let p = c.decoderLayerKey(stage: i, block: c.numResBlocks + 1, flatIndex: index)
                let up = c.isResidual ? cout : cout / 2
                l.out += [(p + ".resample.1.weight", [up, cout, 3, 3]), (p + ".resample.1.bias", [up])]
                if c.temporalUpsample[i] { l.conv(p + ".time_conv", 2 * cout, cout, (3, 1, 1)) }
                index += 1
            }
        }
        l.out.append(("decoder.head.0.gamma", [dims[c.dimMult.count], 1, 1, 1]))
        l.conv("decoder.head.2", c.pixelChannels, dims[c.dimMult.count], (3, 3, 3))
        return l
    }

    /// Random decoder weights of the real architecture (benchmarks): fan-in scaled convolutions,
    /// unit norm gammas.
    public static func randomWeights(_ c: WanVAEConfig, on backend: any Backend, seed: UInt64 = 0,
                                     dtype: DType = .f32) throws -> InMemoryTensors {
        try shapeList(c).randomWeights(on: backend, seed: seed &+ 0xDEC0, dtype: dtype)
    }
}

extension WanVAEEncoder {
    /// Every encoder weight (Wan's key layout, PyTorch shapes) of a configuration: the layers
    /// `WanVAEEncoder.init` binds.
    public static func weightShapes(_ c: WanVAEConfig) -> [(String, Shape)] { shapeList(c).out }

    static func shapeList(_ c: WanVAEConfig) -> WanVAEShapeList {
        var l = WanVAEShapeList()
        let z = c.zDim
        l.conv("conv1", 2 * z, 2 * z, (1, 1, 1))
        let dims = c.encoderDims
        l.conv("encoder.conv1", dims[0], c.pixelChannels, (3, 3, 3))
        var index = 0
        let stages = c.dimMult.count
        for i in 0..<stages {
            var cin = dims[i]
            for j in 0..<c.numResBlocks {
                l.residual(c.encoderLayerKey(stage: i, block: j, flatIndex: index), cin, dims[i + 1])
                cin = dims[i + 1]
                index += 1
            }
            if i != stages - 1 {
                let p = c.encoderLayerKey(stage: i, block: c.numResBlocks, flatIndex: index), d = dims[i + 1]
                l.out += [(p + ".resample.1.weight", [d, d, 3, 3]), (p + ".resample.1.bias", [d])]
                if c.temporalDownsample[i] { l.conv(p + ".time_conv", d, d, (3, 1, 1)) }
                index += 1
            }
        }
        let top = dims[stages]
        l.residual("encoder.middle.0", top, top)
        l.attention("encoder.middle.1", top)
        l.residual("encoder.middle.2", top, top)
        l.out.append(("encoder.head.0.gamma", [top, 1, 1, 1]))
        l.conv("encoder.head.2", 2 * z, top, (3, 3, 3))
        return l
    }

    /// Random encoder weights of the real architecture (benchmarks), as `WanVAEDecoder.randomWeights`.
    public static func randomWeights(_ c: WanVAEConfig, on backend: any Backend, seed: UInt64 = 0,
                                     dtype: DType = .f32) throws -> InMemoryTensors {
        try shapeList(c).randomWeights(on: backend, seed: seed &+ 0xE4C0, dtype: dtype)
    }
}
