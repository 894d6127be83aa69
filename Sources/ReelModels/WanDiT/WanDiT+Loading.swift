import ReelCore

extension WanDiT {
    /// Key rules from the layouts Reel reads to the original Wan names.
    public enum Layout: String, CaseIterable, Sendable {
        /// Wan-AI's original checkpoints and Reel's own safetensors.
        case wan
        /// LongLive's `longlive_base.pt` after picking its generator sub-dict: keys start with `model.`.
        case longLive
        /// diffusers' `WanTransformer3DModel`.
        case diffusers

        public var rules: [KeyRule] {
            switch self {
            case .wan: []
            case .longLive: [.replace("_fsdp_wrapped_module.", ""), .dropPrefix("model.")]
            case .diffusers: [
                .rename("scale_shift_table", "head.modulation"),
                .replace(".scale_shift_table", ".modulation"),
                .replace("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
                .replace("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
                .replace("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
                .replace("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
                .replace("condition_embedder.time_proj", "time_projection.1"),
                .replace("proj_out", "head.head"),
                .replace("ffn.net.0.proj", "ffn.0"),
                .replace("ffn.net.2", "ffn.2"),
                // diffusers calls the cross-attention norm `norm2`; Wan calls it `norm3`.
                .replaceIn(prefix: "blocks.", ".norm2.", ".norm3."),
                .replace("attn1.to_out.0", "self_attn.o"),
                .replace("attn2.to_out.0", "cross_attn.o"),
                .replace("attn1.to_", "self_attn."),
                .replace("attn2.to_", "cross_attn."),
                .replace("attn1.", "self_attn."),
                .replace("attn2.", "cross_attn."),
            ]
            }
        }

        /// Guesses the layout from the keys.
        public static func detect(_ keys: [String]) -> Layout {
            if keys.contains(where: { $0.hasPrefix("model.blocks.") || $0.contains("_fsdp_wrapped_module.") }) { return .longLive }
            if keys.contains(where: { $0.contains("condition_embedder.") || $0.contains(".attn1.") }) { return .diffusers }
            return .wan
        }
    }

    /// Reads the configuration from the weights' shapes (layers, dim, heads from the RoPE-compatible
    /// head size 128 when it divides, ffn, text dim, channels).
    public static func detectConfig(_ binder: WeightBinder, headDim: Int? = nil) throws -> WanDiTConfig {
        guard let patch = binder.shape("patch_embedding.weight"), patch.rank == 5 else {
            throw ReelError.weights(message: "no 'patch_embedding.weight' of rank 5: not a Wan DiT checkpoint")
        }
        let dim = patch[0], inChannels = patch[1], p = patch[3]
        guard let ffn = binder.shape("blocks.0.ffn.0.weight")?[0],
              let textDim = binder.shape("text_embedding.0.weight")?[1],
              let freqDim = binder.shape("time_embedding.0.weight")?[1],
              let headOut = binder.shape("head.head.weight")?[0] else {
            throw ReelError.weights(message: "missing ffn, text, time or head weights: not a Wan DiT checkpoint")
        }
        var layers = 0
        while binder.contains("blocks.\(layers).self_attn.q.weight") { layers += 1 }
        let hd = headDim ?? (dim % 128 == 0 ? 128 : (dim % 64 == 0 ? 64 : dim))
        return WanDiTConfig(dim: dim, ffnDim: ffn, heads: dim / hd, layers: layers, inChannels: inChannels,
                            outChannels: headOut / (p * p), freqDim: freqDim, textDim: textDim, patch: p,
                            crossAttentionNorm: binder.contains("blocks.0.norm3.weight"))
    }

    /// Loads a DiT from `source` (layout detected unless given), optionally merging a LoRA.
    /// - Parameters:
    ///   - heads: attention heads; detected as dim/128 when nil (true of every released Wan2.1).
    ///   - quantization: the blocks' layers quantized as they load, one block at a time (`quantized(_:)`).
    ///   - streaming: blocks `streaming.first...` loaded straight into host memory and streamed through device
    ///     slots (`BlockStreaming`); the model equals `load(...).quantized(q).streamingBlocks(from:slots:)` without
    ///     those blocks ever being on the device, so a DiT larger than the device memory loads.
    public static func load(from source: any TensorSource, layout: Layout? = nil, heads: Int? = nil,
                            lora: (any TensorSource)? = nil, loraScale: Float = 1,
                            backend: any Backend, dtype: DType = .f32, quantization: LinearQuantization? = nil,
                            streaming: BlockStreaming? = nil) throws -> WanDiT {
        let layout = layout ?? Layout.detect(source.keys)
        let b = try WeightBinder(source: source, rules: layout.rules, backend: backend, dtype: dtype)
        var config = try detectConfig(b)
        if let heads { config.heads = heads }
        try config.validate()
        if let streaming {
            try require(streaming.first >= 0 && streaming.first <= config.layers && streaming.slots >= 1, "WanDiT.load",
                        "first streamed block \(streaming.first) of \(config.layers), \(streaming.slots) slots")
        }
        let merger = try lora.map { try LoRAMerger(source: $0, scale: loraScale, backend: backend, dtype: dtype) }
        let binder = WanDiTBinder(weights: b, lora: merger)
        let copier = try streaming.map { try BlockStreamer.copier($0.copyStream) }
        var hostBlocks: [(block: Block, source: HostBlockSource)] = []
        let weights = try WanDiTWeights(binder, config, dtype: dtype) { i in
            guard let streaming, let copier, i >= streaming.first else {
                let block = try Block(binder, "blocks.\(i)", config)
                return try quantization.map { try block.quantized($0) } ?? block
            }
            // Read, converted, merged and quantized on the host; its bytes go to its host buffer; the host tensors go.
            var block = try Block(binder.on(streaming.host), "blocks.\(i)", config)
            if streaming.fromMappedFile {
                try require(quantization == nil && merger == nil, "WanDiT.load", "blocks streamed from the mapped file "
                            + "are used as stored: no LoRA merge, no --fp8/--int8")
                hostBlocks.append(try BlockStreamer.mappedLayout(of: block))
                return hostBlocks[hostBlocks.count - 1].block
            }
            if let quantization { block = try block.quantized(quantization) }
            hostBlocks.append(try BlockStreamer.hostCopy(of: block, copier: copier))
            return hostBlocks[hostBlocks.count - 1].block
        }
        try b.finish()
        try merger?.finish()
        guard let streaming, let copier, !hostBlocks.isEmpty else {
            return WanDiT(config: config, weights: weights, backend: backend)
        }
        let streamer = try BlockStreamer(hostBlocks: hostBlocks, first: streaming.first,
                                         slots: min(streaming.slots, hostBlocks.count), compute: backend, copier: copier)
        return WanDiT(config: config, weights: weights, backend: backend, streamer: streamer)
    }
}

extension WanDiT {
    /// The checkpoint's tensors under Reel's canonical (Wan) names, with a LoRA merged into its
    /// Linear weights: what `reel convert` writes. Strict like `load`: unknown keys are an error.
    public static func canonicalTensors(from source: any TensorSource, layout: Layout? = nil,
                                        lora: (any TensorSource)? = nil, loraScale: Float = 1,
                                        backend: any Backend, dtype: DType) throws -> [(String, Tensor)] {
        let b = try WeightBinder(source: source, rules: (layout ?? Layout.detect(source.keys)).rules,
                                 backend: backend, dtype: dtype)
        _ = try detectConfig(b)  // refuses what is not a Wan DiT
        let merger = try lora.map { try LoRAMerger(source: $0, scale: loraScale, backend: backend, dtype: dtype) }
        let out = try b.canonicalKeys.map { name -> (String, Tensor) in
            var t = try b.tensor(name, shape: nil)
            if let merger, name.hasSuffix(".weight"), t.rank == 2 {
                t = try merger.merge(into: t, module: String(name.dropLast(".weight".count)))
            }
            return (name, t)
        }
        try b.finish()
        try merger?.finish()
        return out
    }
}
