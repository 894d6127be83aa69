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

    /// Binds every layer of the model `c` (each key once, shapes checked by `w`).
    init(_ w: WanDiTBinder, _ c: WanDiTConfig, dtype: DType) throws {
        self.dtype = dtype
        patchEmbedding = try WanDiT.PatchEmbedding(w, "patch_embedding", c)
        blocks = try (0..<c.layers).map { try WanDiT.Block(w, "blocks.\($0)", c) }
        textEmbedding = try WanDiT.TextEmbedding(w, "text_embedding", c)
        timeEmbedding = try WanDiT.TimeEmbedding(w, c)
        head = try WanDiT.Head(w, "head", c)
    }

    /// The same weights with each block's layers quantized as `quantization` says (`WanDiT.quantized`).
    func quantized(_ quantization: LinearQuantization) throws -> WanDiTWeights {
        var w = self
        let format = quantization.format
        w.blocks = try blocks.map { b in
            var q = b
            q.ffn = try b.ffn.quantized(to: format)
            if quantization.layers == .allLinears {
                q.selfAttention = try b.selfAttention.quantized(to: format)
                q.crossAttention = try b.crossAttention.quantized(to: format)
            }
            return q
        }
        return w
    }
}
