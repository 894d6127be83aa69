import ReelCore

/// Every layer of a causal Wan DiT, bound from a checkpoint by Wan's key names.
struct WanDiTWeights: @unchecked Sendable {
    /// Storage type of the weights and activations.
    var dtype: DType
    var patchEmbedding: WanDiT.PatchEmbedding
    var textEmbedding: WanDiT.TextEmbedding
    var timeEmbedding: WanDiT.TimeEmbedding
    var blocks: [WanDiT.Block]
    var head: WanDiT.Head

    /// Binds every layer of the model `c` (each key once, shapes checked by `w`). `block`: binds block i itself
    /// (streamed blocks bound into host memory, `WanDiT.load(streaming:)`); nil: `w` binds every block.
    init(_ w: WanDiTBinder, _ c: WanDiTConfig, dtype: DType, block: ((Int) throws -> WanDiT.Block)? = nil) throws {
        self.dtype = dtype
        patchEmbedding = try WanDiT.PatchEmbedding(w, "patch_embedding", c)
        blocks = try (0..<c.layers).map { i in try block?(i) ?? WanDiT.Block(w, "blocks.\(i)", c) }
        textEmbedding = try WanDiT.TextEmbedding(w, "text_embedding", c)
        timeEmbedding = try WanDiT.TimeEmbedding(w, c)
        head = try WanDiT.Head(w, "head", c)
    }

    /// The same weights with each block's layers quantized as `quantization` says (`WanDiT.quantized`).
    func quantized(_ quantization: LinearQuantization) throws -> WanDiTWeights {
        var w = self
        w.blocks = try blocks.map { try $0.quantized(quantization) }
        return w
    }
}

extension WanDiT.Block {
    /// The block with its FFN (and with `.allLinears` its attention projections) quantized, on its own backend.
    func quantized(_ quantization: LinearQuantization) throws -> WanDiT.Block {
        var q = self
        let format = quantization.format
        q.ffn = try ffn.quantized(to: format)
        if quantization.layers == .allLinears {
            q.selfAttention = try selfAttention.quantized(to: format)
            q.crossAttention = try crossAttention.quantized(to: format)
        }
        return q
    }
}
