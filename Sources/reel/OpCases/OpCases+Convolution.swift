import ReelCore
import ReelCUDA

/// Convolutions, channel-last: conv3d ([B, T, H, W, C] by [Cout, kT, kH, kW, C]) and conv2d; on CUDA by
/// path (cuDNN's implicit GEMM, Reel's im2col + GEMM).
extension OpCaseList {
    mutating func convolution(_ dt: DType) {
        func specs(_ shapes: Shape...) -> [InputSpec] { shapes.map { InputSpec(shape: $0, dtype: dt) } }
        // Each path for 16-bit storage: cuDNN's implicit GEMM and Reel's im2col + GEMM.
        let paths: [CUDABackend.KernelChoice] = dt == .f32 ? [.auto] : (cudnn ? [.cudnn, .own] : [.own])
        for path in paths {
            let tag = path == .auto ? "" : " (\(path))"
            check("conv3d", "[1,3,10,12,16] * [24,3,3,3,16] causal\(tag)", dt, specs([1, 3, 10, 12, 16], [24, 3, 3, 3, 16], [24]),
                  factor: 10) { b, t in
                try withConvolutionPath(b, path) {
                    try b.conv3d(t[0], weight: t[1], bias: t[2], stride: (1, 1, 1), padding: .causal(t: 2, hw: 1))
                }
            }
            check("conv3d", "[2,1,9,11,8] * [4,1,3,3,8] stride 2\(tag)", dt, specs([2, 1, 9, 11, 8], [4, 1, 3, 3, 8]), factor: 10) { b, t in
                try withConvolutionPath(b, path) {
                    try b.conv3d(t[0], weight: t[1], bias: nil, stride: (1, 2, 2), padding: ConvPadding(h: (0, 1), w: (1, 1)))
                }
            }
            // The residual added in the convolution's epilogue (cuDNN) or by a separate add.
            check("conv3d", "[1,3,10,12,16] * [24,3,3,3,16] causal + residual\(tag)", dt,
                  specs([1, 3, 10, 12, 16], [24, 3, 3, 3, 16], [24], [1, 3, 10, 12, 24]), factor: 10) { b, t in
                try withConvolutionPath(b, path) {
                    try b.conv3d(t[0], weight: t[1], bias: t[2], stride: (1, 1, 1), padding: .causal(t: 2, hw: 1), adding: t[3])
                }
            }
            check("conv3d", "[1,1,9,11,8] * [8,1,3,3,8] + residual, no bias\(tag)", dt,
                  specs([1, 1, 9, 11, 8], [8, 1, 3, 3, 8], [1, 1, 9, 11, 8]), factor: 10) { b, t in
                try withConvolutionPath(b, path) {
                    try b.conv3d(t[0], weight: t[1], bias: nil, stride: (1, 1, 1), padding: ConvPadding(h: (1, 1), w: (1, 1)), adding: t[2])
                }
            }
            // Fewer than 16 outputs: on cuDNN the filters are padded by zeros, the real channels sliced out.
            check("conv3d", "[1,3,10,12,16] * [3,3,3,3,16] narrow + residual\(tag)", dt,
                  specs([1, 3, 10, 12, 16], [3, 3, 3, 3, 16], [3], [1, 1, 10, 12, 3]), factor: 10) { b, t in
                try withConvolutionPath(b, path) {
                    try b.conv3d(t[0], weight: t[1], bias: t[2], stride: (1, 1, 1), padding: ConvPadding(h: (1, 1), w: (1, 1)), adding: t[3])
                }
            }
            check("conv3d", "[1,2,6,6,32] * [16,1,1,1,32] pointwise\(tag)", dt, specs([1, 2, 6, 6, 32], [16, 1, 1, 1, 32], [16]),
                  factor: 10) { b, t in
                try withConvolutionPath(b, path) { try b.conv3d(t[0], weight: t[1], bias: t[2], stride: (1, 1, 1), padding: ConvPadding()) }
            }
        }
        if dt == .bf16 {
            // A Wan VAE convolution at its real size (middle blocks, 384 channels at 60x104).
            check("conv3d", "VAE [1,3,60,104,384] * [384,3,3,3,384]", dt, specs([1, 3, 60, 104, 384], [384, 3, 3, 3, 384], [384]),
                  factor: 10) { b, t in
                try b.conv3d(t[0], weight: t[1], bias: t[2], stride: (1, 1, 1), padding: ConvPadding(h: (1, 1), w: (1, 1)))
            }
            // The full-resolution residual convolution (96 channels at 480x832, one frame after its cache).
            check("conv3d", "VAE [1,3,480,832,96] * [96,3,3,3,96] + residual", dt,
                  specs([1, 3, 480, 832, 96], [96, 3, 3, 3, 96], [96], [1, 1, 480, 832, 96]), factor: 10) { b, t in
                try b.conv3d(t[0], weight: t[1], bias: t[2], stride: (1, 1, 1), padding: ConvPadding(h: (1, 1), w: (1, 1)), adding: t[3])
            }
            // The head convolution (96 -> 3 channels at 480x832), narrow: padded to 16 filters on cuDNN.
            check("conv3d", "VAE head [1,3,480,832,96] * [3,3,3,3,96]", dt,
                  specs([1, 3, 480, 832, 96], [3, 3, 3, 3, 96], [3]), factor: 10) { b, t in
                try b.conv3d(t[0], weight: t[1], bias: t[2], stride: (1, 1, 1), padding: ConvPadding(h: (1, 1), w: (1, 1)))
            }
        }
        check("conv2d", "[1,10,12,8] * [6,3,3,8] pad 1", dt, specs([1, 10, 12, 8], [6, 3, 3, 8]), factor: 10) { b, t in
            try b.conv2d(t[0], weight: t[1], bias: nil, padding: (1, 1))
        }
    }

    mutating func convolutionPerf() {
        // CPU, f32: the VAE's 3x3x3 causal conv at a reduced size, and a 1x1x1.
        let (t, hh, ww, c) = (4, 30, 52, 96)
        let voxels = t * hh * ww
        perf(.cpu, "conv3d", "[1,\(t),\(hh),\(ww),\(c)] k3 \(c)->\(c)", .f32,
             [InputSpec(shape: [1, t, hh, ww, c], dtype: .f32), InputSpec(shape: [c, 3, 3, 3, c], dtype: .f32)],
             flops: 2.0 * Double(voxels * c * c * 27), bytes: Double(2 * voxels * c + 27 * c * c) * 4) { b, x in
            try b.conv3d(x[0], weight: x[1], bias: nil, stride: (1, 1, 1), padding: .causal(t: 2, hw: 1))
        }
        perf(.cpu, "conv3d", "[1,\(t),\(hh),\(ww),\(c)] k1 \(c)->\(2 * c)", .f32,
             [InputSpec(shape: [1, t, hh, ww, c], dtype: .f32), InputSpec(shape: [2 * c, 1, 1, 1, c], dtype: .f32)],
             flops: 2.0 * Double(voxels * c * 2 * c), bytes: Double(3 * voxels * c + 2 * c * c) * 4) { b, x in
            try b.conv3d(x[0], weight: x[1], bias: nil, stride: (1, 1, 1), padding: ConvPadding())
        }

        // CUDA, bf16: the Wan VAE decoder's 3x3x3 convolutions, one latent frame with its 2 cached frames.
        func specs(_ shapes: Shape...) -> [InputSpec] { shapes.map { InputSpec(shape: $0, dtype: .bf16) } }
        for (t, h, w, c) in [(3, 60, 104, 384), (3, 240, 416, 192), (3, 480, 832, 96)] {
            for path in [CUDABackend.KernelChoice.auto, .own] {
                let rows = h * w
                let elements = t * h * w * c + rows * c + 27 * c * c
                perf(.cuda, "conv3d", "[1,\(t),\(h),\(w),\(c)] * [\(c),3,3,3,\(c)] (\(path))", .bf16,
                     specs([1, t, h, w, c], [c, 3, 3, 3, c], [c]), flops: 2 * Double(rows * c * 27 * c),
                     bytes: 2 * Double(elements)) { b, x in
                    try withConvolutionPath(b, path) {
                        try b.conv3d(x[0], weight: x[1], bias: x[2], stride: (1, 1, 1), padding: ConvPadding(h: (1, 1), w: (1, 1)))
                    }
                }
            }
        }
        // One output frame of a causal conv from 2 cached frames and a new one, with the residual add,
        // five ways: the frames joined by a copy then one k3 conv; the 3 frames already side by side (a
        // third cached frame per layer); the time taps as three k1 convs each adding the last; a k2 conv
        // over the cached pair then a k1 conv over the new frame (the decoder's path, `CausalSlot.pair`);
        // the 3 frames interleaved per pixel as one 2D conv over 3C channels.
        enum CausalVariant: String, CaseIterable {
            case joined = "joined", together = "3 frames already together", threeTaps = "taps 1 + 1 + 1"
            case pair = "pair + new (the decoder's)", channels = "taps as 3x channels"
        }
        for (h, w, c) in [(240, 416, 192), (480, 832, 96)] {
            let frame = Double(h * w * c)
            let pad = ConvPadding(h: (1, 1), w: (1, 1))
            for variant in CausalVariant.allCases {
                // Inputs: the residual, the bias, then the variant's frames and weights.
                let frames: [InputSpec] = switch variant {
                case .joined, .pair, .threeTaps: specs([1, 2, h, w, c], [1, 1, h, w, c], [c, 3, 3, 3, c])  // cache pair, new frame, weight
                case .together: specs([1, 3, h, w, c], [c, 3, 3, 3, c])
                case .channels: specs([1, 1, h, w, 3 * c], [c, 1, 3, 3, 3 * c])
                }
                perf(.cuda, "conv3d", "[1,2+1,\(h),\(w),\(c)] k3 + residual, \(variant.rawValue)", .bf16,
                     specs([1, 1, h, w, c], [c]) + frames, flops: 2 * Double(h * w * c * 27 * c),
                     bytes: 2 * (variant == .joined ? 10 * frame : 8 * frame), build: { b, x in
                    let (res, bias) = (x[0], x[1])
                    func conv(_ x: Tensor, _ weight: Tensor, bias: Tensor?, adding r: Tensor) throws -> Tensor {
                        try b.conv3d(x, weight: weight, bias: bias, stride: (1, 1, 1), padding: pad, adding: r)
                    }
                    switch variant {
                    case .joined:
                        return { try conv(try b.concat([x[2], x[3]], axis: 1), x[4], bias: bias, adding: res) }
                    case .pair:
                        let w2 = try b.slice(x[4], axis: 1, start: 0, length: 2), w1 = try b.slice(x[4], axis: 1, start: 2, length: 1)
                        return { try conv(x[3], w1, bias: nil, adding: try conv(x[2], w2, bias: bias, adding: res)) }
                    case .threeTaps:
                        let frames = [try b.slice(x[2], axis: 1, start: 0, length: 1), try b.slice(x[2], axis: 1, start: 1, length: 1),
                                      x[3]]
                        let taps = try (0..<3).map { try b.slice(x[4], axis: 1, start: $0, length: 1) }
                        return {
                            var acc = res
                            for k in 0..<3 { acc = try conv(frames[k], taps[k], bias: k == 0 ? bias : nil, adding: acc) }
                            return acc
                        }
                    case .together, .channels:
                        return { try conv(x[2], x[3], bias: bias, adding: res) }
                    }
                })
            }
        }
    }
}
