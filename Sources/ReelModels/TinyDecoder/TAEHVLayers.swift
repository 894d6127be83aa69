import ReelCore

// The layers TAEHV's encoder and decoder share (madebyollin/taehv `taehv.py`: `conv`, `MemBlock`),
// channel-last on any Backend. Used by `TinyDecoder` and `TinyEncoder`.

/// A PyTorch Conv2d applied to every frame: kernel k, padding k/2, spatial stride 1 or 2.
struct TAEHVConv {
    let weight: Tensor   // [Cout, 1, k, k, Cin]
    let bias: Tensor?
    let pad: Int
    let stride: Int

    /// `[N, T, H, W, Cin]` -> `[N, T, H', W', Cout]`, H' = ceil(H / stride) for k = 3.
    func callAsFunction(_ x: Tensor) throws -> Tensor {
        try x.backend.conv3d(x, weight: weight, bias: bias, stride: (1, stride, stride),
                             padding: ConvPadding(h: (pad, pad), w: (pad, pad)))
    }
}

/// relu(conv(cat(x, past)) + skip(x)), past = the block's input one frame earlier (zeros at the
/// start of a stream): `conv` is conv 2C->C, ReLU, conv, ReLU, conv (`.conv.0/2/4`).
struct TAEHVMemBlock {
    let conv0: TAEHVConv, conv2: TAEHVConv, conv4: TAEHVConv
    /// A 1x1 conv where input and output widths differ; identity otherwise (taew2_1 has none).
    let skip: TAEHVConv?

    /// Runs the block over the frames of `x` `[N, T, H, W, C]` in order; `memory` holds the input
    /// frame before `x` (nil at the start of a stream) and is left holding x's last frame.
    func callAsFunction(_ x: Tensor, memory: inout Tensor?) throws -> Tensor {
        let b = x.backend
        let t = x.shape[1]
        let previous = try memory ?? b.zeros(x.shape.replacing(axis: 1, with: 1), dtype: x.dtype)
        let past = t == 1 ? previous : try b.concat([previous, b.slice(x, axis: 1, start: 0, length: t - 1)], axis: 1)
        memory = try b.slice(x, axis: 1, start: t - 1, length: 1)
        var h = try conv0(b.concat([x, past], axis: 4))                           // [N, T, H, W, C]
        h = try conv2(b.unary(.relu, h))
        h = try conv4(b.unary(.relu, h))
        return try b.unary(.relu, b.add(h, skip.map { try $0(x) } ?? x))
    }
}

extension WeightBinder {
    /// The PyTorch Conv2d `name` (`.weight` `[Cout, Cin, k, k]`, `.bias` `[Cout]` when `bias`).
    func taehvConv(_ name: String, _ cin: Int, _ cout: Int, kernel: Int = 3, stride: Int = 1,
                   bias: Bool = true) throws -> TAEHVConv {
        TAEHVConv(weight: try conv2dWeight(name + ".weight", cout: cout, cin: cin, kernel: kernel),
                  bias: bias ? try exactTensor(name + ".bias", [cout]) : nil, pad: kernel / 2, stride: stride)
    }

    /// The MemBlock `name` of width `n` (`.conv.0/2/4`, `.skip` where the checkpoint has one).
    func taehvMemBlock(_ name: String, _ n: Int) throws -> TAEHVMemBlock {
        TAEHVMemBlock(conv0: try taehvConv(name + ".conv.0", 2 * n, n), conv2: try taehvConv(name + ".conv.2", n, n),
                      conv4: try taehvConv(name + ".conv.4", n, n),
                      skip: contains(name + ".skip.weight")
                          ? try taehvConv(name + ".skip", n, n, kernel: 1, bias: false) : nil)
    }
}
