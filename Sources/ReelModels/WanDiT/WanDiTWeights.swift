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

    /// The same weights with each block's `layers` in FP8 (`WanDiT.quantizedFP8`).
    func withFP8(_ layers: FP8Layers) throws -> WanDiTWeights {
        var w = self
        w.blocks = try blocks.map { b in
            var q = b
            q.ffn = try b.ffn.quantizedFP8()
            if layers == .allLinears {
                q.selfAttention = try b.selfAttention.quantizedFP8()
                q.crossAttention = try b.crossAttention.quantizedFP8()
            }
            return q
        }
        return w
    }
}
