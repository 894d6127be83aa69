import ReelCore

// The small layers of the causal Wan DiT (LongLive `wan/modules/model.py`, `causal_model.py`), each
// with its weights and the ops it runs. Each binds its weights by Wan's key names (`blocks.3.ffn.0`).

/// Binds the DiT's weights by canonical (Wan) name, merging a LoRA into Linear weights when given.
struct WanDiTBinder {
    let weights: WeightBinder
    let lora: LoRAMerger?
    /// Where the tensors load (nil: the binder's backend): a host backend for streamed blocks.
    var target: (any Backend)? = nil

    /// The tensor `name`, checked against `shape` (a reshape of the same element count is fine).
    func tensor(_ name: String, _ shape: Shape) throws -> Tensor { try weights.tensor(name, shape: shape, on: target) }

    /// The same binder loading onto `backend`.
    func on(_ backend: any Backend) -> WanDiTBinder { WanDiTBinder(weights: weights, lora: lora, target: backend) }
}

extension WanDiT {
    /// A linear layer's input: 16-bit rows, or quantized rows (FP8 or INT8) where the adaLN before a
    /// quantized layer wrote them directly (`modulatedLayerNormQuantized`).
    enum LinearInput {
        case rows(Tensor)
        case quantized(RowQuantized)
    }

    /// A Linear layer: weight `[out, in]`, bias `[out]`; with `quantized`, the weight in FP8 E4M3 or
    /// INT8 with a scale per output channel (`weight` is then `quantized.values`).
    struct Linear: @unchecked Sendable {
        var weight: Tensor
        var bias: Tensor?
        var quantized: RowQuantized?

        init(weight: Tensor, bias: Tensor?) { self.weight = weight; self.bias = bias }

        /// Binds `name.weight` `[out, in]` (with the LoRA for module `name` merged) and `name.bias`.
        init(_ w: WanDiTBinder, _ name: String, out: Int, in inputs: Int) throws {
            var weight = try w.tensor("\(name).weight", [out, inputs])
            if let lora = w.lora { weight = try lora.merge(into: weight, module: name) }
            self.init(weight: weight, bias: try w.tensor("\(name).bias", [out]))
        }

        /// The layer with its weight quantized per output channel to `format` (`Backend.quantizeRows`).
        func quantized(to format: QuantizedFormat) throws -> Linear {
            if let quantized {
                precondition(quantized.values.dtype == format.dtype, "Linear: already quantized to another format")
                return self
            }
            let q = try weight.backend.quantizeRows(weight, to: format.dtype)
            var l = Linear(weight: q.values, bias: bias)
            l.quantized = q
            return l
        }

        /// The format of this layer's weight, nil when it is not quantized.
        var format: QuantizedFormat? { quantized.flatMap { QuantizedFormat(dtype: $0.values.dtype) } }

        /// The adaLN `x * (1 + scale) + shift` of `x`, reshaped to `dims`, as this layer's input:
        /// straight to quantized rows when this layer is quantized.
        func modulatedInput(_ x: Tensor, scale: Tensor, shift: Tensor, eps: Float,
                            as dims: [Int]) throws -> LinearInput {
            let be = weight.backend
            if let quantized {
                return .quantized(try be.modulatedLayerNormQuantized(x, scale: scale, shift: shift, eps: eps,
                                                                     to: quantized.values.dtype).reshaped(dims))
            }
            return .rows(try be.modulatedLayerNorm(x, scale: scale, shift: shift, eps: eps).reshaped(dims))
        }

        /// `x W^T + b`.
        func callAsFunction(_ x: Tensor) throws -> Tensor { try self(.rows(x)) }

        /// `x W^T + b`: the FP8 or INT8 GEMM when this layer is quantized (16-bit rows quantized per
        /// token first), else the plain one; with GELU (tanh), a residual added, or written into `out` (at
        /// most one of the last two).
        func callAsFunction(_ input: LinearInput, gelu: Bool = false, adding residual: Tensor? = nil,
                            into out: Tensor? = nil) throws -> Tensor {
            let be = weight.backend
            if let quantized {
                let xq: RowQuantized
                switch input {
                case .rows(let x): xq = try be.quantizeRows(x, to: quantized.values.dtype)
                case .quantized(let q): xq = q
                }
                return try be.quantizedLinear(xq, weight: quantized, bias: bias, gelu: gelu, adding: residual, into: out)
            }
            guard case .rows(let x) = input else {
                throw ReelError.invalidArgument(op: "WanDiT",
                                                message: "a layer without quantized weights read an input made only quantized")
            }
            precondition(!(gelu && (residual != nil || out != nil)) && !(residual != nil && out != nil),
                         "Linear: one variant at a time")
            if gelu { return try be.linearGELU(x, weight: weight, bias: bias) }
            if let residual { return try be.linear(x, weight: weight, bias: bias, adding: residual) }
            if let out {
                try be.linear(x, weight: weight, bias: bias, into: out)
                return out
            }
            return try be.linear(x, weight: weight, bias: bias)
        }
    }

    /// RMSNorm over the last axis with a learned weight (Wan's `WanRMSNorm`, q and k norms over the
    /// whole dim).
    struct RMSNorm {
        var weight: Tensor
        let eps: Float

        init(_ w: WanDiTBinder, _ name: String, dim: Int, eps: Float) throws {
            weight = try w.tensor("\(name).weight", [dim])
            self.eps = eps
        }

        func callAsFunction(_ x: Tensor) throws -> Tensor { try x.backend.rmsNorm(x, weight: weight, eps: eps) }

        /// The norm then 3D RoPE on `x` `[1, L, heads, headDim]` (one fused op).
        func rotated(_ x: Tensor, grid: RoPEGrid) throws -> Tensor {
            try x.backend.rmsNormRoPE(x, weight: weight, eps: eps, grid: grid)
        }

        /// `rotated(x, grid:)` written into `out`.
        func rotated(_ x: Tensor, grid: RoPEGrid, into out: Tensor) throws {
            try x.backend.rmsNormRoPE(x, weight: weight, eps: eps, grid: grid, into: out)
        }
    }

    /// LayerNorm with affine weight and bias (Wan's `norm3` before cross-attention).
    struct LayerNorm {
        var weight: Tensor
        var bias: Tensor
        let eps: Float

        init(_ w: WanDiTBinder, _ name: String, dim: Int, eps: Float) throws {
            weight = try w.tensor("\(name).weight", [dim])
            bias = try w.tensor("\(name).bias", [dim])
            self.eps = eps
        }

        func callAsFunction(_ x: Tensor) throws -> Tensor {
            try x.backend.layerNorm(x, weight: weight, bias: bias, eps: eps)
        }
    }

    /// The block's feed-forward network: Linear, GELU (tanh), Linear (Wan's `ffn.0`, `ffn.2`).
    struct FeedForward {
        var up: Linear
        var down: Linear

        init(up: Linear, down: Linear) { self.up = up; self.down = down }

        init(_ w: WanDiTBinder, _ name: String, dim: Int, hidden: Int) throws {
            up = try Linear(w, "\(name).0", out: hidden, in: dim)
            down = try Linear(w, "\(name).2", out: dim, in: hidden)
        }

        /// Both layers quantized to `format` (`Linear.quantized`).
        func quantized(to format: QuantizedFormat) throws -> FeedForward {
            FeedForward(up: try up.quantized(to: format), down: try down.quantized(to: format))
        }

        func callAsFunction(_ x: LinearInput) throws -> Tensor {
            let hidden = try up(x, gelu: true)                // GELU(approximate="tanh"), as Wan
            return try down(.rows(hidden))
        }
    }

    /// A block's adaLN modulation: a learned `[6, dim]` table added to the time projection.
    struct Modulation {
        /// The six rows of the table, in Wan's order.
        enum Part: Int {
            case attentionShift, attentionScale, attentionGate, ffnShift, ffnScale, ffnGate
        }

        /// The table `[6, dim]`.
        var table: Tensor

        init(_ w: WanDiTBinder, _ name: String, dim: Int) throws {
            table = try w.tensor(name, [6, dim])
        }

        /// table + e0 `[6, F, dim]` as `[6, F, dim]`, so that each part of a range of frames is a view.
        func callAsFunction(_ e0: Tensor) throws -> Modulated {
            let dim = table.shape[1]
            return Modulated(values: try e0.backend.add(e0, try table.reshaped([6, 1, dim])), dim: dim)
        }

        /// The modulation of one pass: table + time projection, `[6, F, dim]`.
        struct Modulated {
            let values: Tensor
            let dim: Int

            /// `part` for frames `r`: a `[n, 1, dim]` view for n frames (no copy).
            func callAsFunction(_ part: Part, frames r: Range<Int>) throws -> Tensor {
                try values.narrowed(axis: 0, start: part.rawValue, length: 1)
                    .narrowed(axis: 1, start: r.lowerBound, length: r.count).reshaped([r.count, 1, dim])
            }
        }
    }
}
