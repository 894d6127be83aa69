import Foundation
import ReelCore

/// Shape of a umT5 encoder (Wan2.1 `wan/modules/t5.py`, transformers `UMT5EncoderModel`).
public struct UMT5Config: Codable, Sendable, Equatable {
    public var vocabulary: Int
    public var dim: Int
    public var heads: Int
    public var headDim: Int
    public var ffnDim: Int
    public var layers: Int
    public var buckets: Int
    public var maxDistance: Int
    public var eps: Float

    public init(vocabulary: Int, dim: Int, heads: Int, headDim: Int, ffnDim: Int, layers: Int,
                buckets: Int = 32, maxDistance: Int = 128, eps: Float = 1e-6) {
        self.vocabulary = vocabulary; self.dim = dim; self.heads = heads; self.headDim = headDim
        self.ffnDim = ffnDim; self.layers = layers; self.buckets = buckets; self.maxDistance = maxDistance; self.eps = eps
    }

    /// umT5-XXL's encoder as Wan2.1 uses it (5.7B parameters).
    public static let xxl = UMT5Config(vocabulary: 256_384, dim: 4096, heads: 64, headDim: 64, ffnDim: 10240, layers: 24)
}

/// The umT5 encoder: pre-norm RMS blocks, attention without 1/sqrt(d) scaling and with a learned
/// relative position bias per layer, gated-GELU (tanh) feed-forward, final RMS norm.
/// It runs only the real tokens of a prompt: with padding masked out, as Wan runs it, this is exact.
public final class UMT5Encoder: @unchecked Sendable {
    public let config: UMT5Config
    public let backend: any Backend
    let tokenEmbedding: Tensor              // [vocab, dim]
    let blocks: [Block]
    let finalNorm: Tensor

    struct Block {
        var norm1, norm2: Tensor
        var q, k, v, o: Linear              // [heads*headDim, dim] / [dim, heads*headDim]
        var positionBias: Tensor            // [buckets, heads]
        var gate, fc1, fc2: Linear          // [ffn, dim], [ffn, dim], [dim, ffn]

        /// The seven linears quantized per output channel to `format` (the norms and position bias stay).
        func quantized(to format: QuantizedFormat) throws -> Block {
            var b = self
            for path in [\Block.q, \.k, \.v, \.o, \.gate, \.fc1, \.fc2] {
                b[keyPath: path] = try self[keyPath: path].quantized(to: format)
            }
            return b
        }
    }

    /// A bias-free linear layer `x W^T`, W `[out, in]`; with `quantized`, W in FP8 E4M3 or INT8 per output channel
    /// and the input rows quantized per row as they come (the DiT's W8A8 path, `Backend.quantizedLinear`).
    struct Linear {
        var weight: Tensor
        var quantized: RowQuantized?

        func callAsFunction(_ x: Tensor) throws -> Tensor {
            let be = weight.backend
            guard let quantized else { return try be.linear(x, weight: weight) }
            return try be.quantizedLinear(try be.quantizeRows(x, to: quantized.values.dtype), weight: quantized, bias: nil,
                                          gelu: false, adding: nil, into: nil)
        }

        func quantized(to format: QuantizedFormat) throws -> Linear {
            if quantized != nil { return self }
            let q = try weight.backend.quantizeRows(weight, to: format.dtype)
            return Linear(weight: q.values, quantized: q)
        }
    }

    /// The format of the blocks' linears, nil when they are in the model's dtype.
    public var quantization: QuantizedFormat? {
        blocks.first?.q.quantized.flatMap { QuantizedFormat(dtype: $0.values.dtype) }
    }

    init(config: UMT5Config, backend: any Backend, tokenEmbedding: Tensor, blocks: [Block], finalNorm: Tensor) {
        self.config = config; self.backend = backend; self.tokenEmbedding = tokenEmbedding
        self.blocks = blocks; self.finalNorm = finalNorm
    }

    public var dtype: DType { tokenEmbedding.dtype }

    /// Encodes token ids (`</s>` included, no padding) to `[ids.count, dim]`.
    public func encode(_ ids: [Int32]) throws -> Tensor {
        let be = backend, c = config
        try require(!ids.isEmpty, "UMT5Encoder.encode", "no tokens")
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= c.vocabulary }) {
            throw ReelError.invalidArgument(op: "UMT5Encoder.encode", message: "token id \(bad) outside the vocabulary of \(c.vocabulary)")
        }
        let n = ids.count
        var x = try be.embedding(try be.tensor(ids, shape: [n]), table: tokenEmbedding)   // [n, dim]
        let buckets = try be.tensor(Self.relativeBuckets(length: n, buckets: c.buckets, maxDistance: c.maxDistance),
                                    shape: [n * n])
        let heads = [1, n, c.heads, c.headDim]
        for b in blocks {
            // Position bias [heads, n, n]: this layer's bucket table gathered by bucket.
            let gathered = try be.embedding(buckets, table: b.positionBias)          // [n*n, heads]
            let biasT = try be.permute(try gathered.reshaped([n, n, c.heads]), [2, 0, 1])
            let h = try be.rmsNorm(x, weight: b.norm1, eps: c.eps)
            let q = try b.q(h).reshaped(heads)
            let k = try b.k(h).reshaped(heads)
            let v = try b.v(h).reshaped(heads)
            // T5 does not scale the scores by 1/sqrt(d); softmax in float32.
            let a = try be.attention(query: q, key: k, value: v, scale: 1, bias: biasT)
            x = try be.add(x, try b.o(try a.reshaped([n, c.heads * c.headDim])))
            let f = try be.rmsNorm(x, weight: b.norm2, eps: c.eps)
            let gated = try be.mul(try b.fc1(f), try be.unary(.geluTanh, try b.gate(f)))
            x = try be.add(x, try b.fc2(gated))
        }
        return try be.rmsNorm(x, weight: finalNorm, eps: c.eps)
    }

    /// Bucket of each (query i, key j) pair, row-major `[n * n]`: bidirectional T5 buckets of the
    /// relative position j - i (half the buckets for j > i), exact below buckets/4, logarithmic up to
    /// maxDistance. The logarithm is evaluated in float32 as the references do, so boundaries agree.
    public static func relativeBuckets(length n: Int, buckets: Int, maxDistance: Int) -> [Int32] {
        let half = buckets / 2, exact = half / 2
        let logRange = Float(log(Double(maxDistance) / Double(exact)))
        var out = [Int32](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n {
                let rel = j - i
                var bucket = rel > 0 ? half : 0
                let d = abs(rel)
                if d < exact {
                    bucket += d
                } else {
                    let large = exact + Int(log(Float(d) / Float(exact)) / logRange * Float(half - exact))
                    bucket += min(large, half - 1)
                }
                out[i * n + j] = Int32(bucket)
            }
        }
        return out
    }
}

extension UMT5Encoder {
    /// Key rules from transformers' `UMT5EncoderModel` layout to Wan's names.
    static let transformersRules: [KeyRule] = [
        .rename("shared.weight", "token_embedding.weight"),
        .rename("encoder.final_layer_norm.weight", "norm.weight"),
        .replace("encoder.block.", "blocks."),
        .replace(".layer.0.SelfAttention.relative_attention_bias.weight", ".pos_embedding.embedding.weight"),
        .replace(".layer.0.SelfAttention.", ".attn."),
        .replace(".layer.0.layer_norm.", ".norm1."),
        .replace(".layer.1.DenseReluDense.wi_0.", ".ffn.gate.0."),
        .replace(".layer.1.DenseReluDense.wi_1.", ".ffn.fc1."),
        .replace(".layer.1.DenseReluDense.wo.", ".ffn.fc2."),
        .replace(".layer.1.layer_norm.", ".norm2."),
    ]

    /// Key rules for `keys`: transformers' layout renamed to Wan's (its tied `encoder.embed_tokens`
    /// bound as the token embedding where `shared.weight` is absent), Wan's kept.
    static func rules(for keys: [String]) -> [KeyRule] {
        guard keys.contains(where: { $0.hasPrefix("encoder.block.") }) else { return [] }
        return keys.contains("shared.weight") ? transformersRules
            : [.rename("encoder.embed_tokens.weight", "token_embedding.weight")] + transformersRules
    }

    /// The configuration of the encoder in `source` (either layout), from its shapes; reads no tensor.
    public static func detectConfig(from source: any TensorSource, backend: any Backend) throws -> UMT5Config {
        try detectConfig(try WeightBinder(source: FilteredTensorSource(source, excluding: tiedCopy(source.keys)),
                                          rules: rules(for: source.keys), backend: backend, dtype: .f32))
    }

    /// transformers ties `encoder.embed_tokens.weight` to `shared.weight`: the copy not bound.
    static func tiedCopy(_ keys: [String]) -> [String] {
        keys.contains("shared.weight") && keys.contains("encoder.embed_tokens.weight") ? ["encoder.embed_tokens.weight"] : []
    }

    static func detectConfig(_ b: WeightBinder) throws -> UMT5Config {
        guard let emb = b.shape("token_embedding.weight"), emb.rank == 2,
              let bias = b.shape("blocks.0.pos_embedding.embedding.weight"), bias.rank == 2,
              let q = b.shape("blocks.0.attn.q.weight"), let ffn = b.shape("blocks.0.ffn.fc1.weight") else {
            throw ReelError.weights(message: "not a umT5 encoder: token_embedding, pos_embedding, attn or ffn weights are missing")
        }
        var layers = 0
        while b.contains("blocks.\(layers).attn.q.weight") { layers += 1 }
        let heads = bias[1]
        return UMT5Config(vocabulary: emb[0], dim: emb[1], heads: heads, headDim: q[0] / heads,
                          ffnDim: ffn[0], layers: layers, buckets: bias[0])
    }

    /// Loads an encoder from Wan's `models_t5_umt5-xxl-enc-bf16.pth` layout or transformers' layout,
    /// detecting the configuration from the weights.
    /// `quantization`: the blocks' linears quantized to FP8 or INT8 as each block loads (`--gpu-memory`'s text
    /// encoder step on the device: about half its bf16 bytes), so the whole model is never on the device in `dtype`.
    public static func load(from source: any TensorSource, backend: any Backend, dtype: DType = .f32,
                            quantization: QuantizedFormat? = nil) throws -> UMT5Encoder {
        let b = try WeightBinder(source: source, rules: rules(for: source.keys), backend: backend, dtype: dtype)
        b.markUsed(tiedCopy(source.keys))
        let config = try detectConfig(b)
        let heads = config.heads
        let d = config.dim, inner = config.heads * config.headDim
        let blocks = try (0..<config.layers).map { i -> Block in
            let p = "blocks.\(i)"
            let table = try b.tensor("\(p).pos_embedding.embedding.weight", shape: [config.buckets, heads])
            func linear(_ name: String, _ shape: Shape) throws -> Linear {
                Linear(weight: try b.tensor("\(p).\(name).weight", shape: shape), quantized: nil)
            }
            let block = Block(norm1: try b.tensor("\(p).norm1.weight", shape: [d]),
                              norm2: try b.tensor("\(p).norm2.weight", shape: [d]),
                              q: try linear("attn.q", [inner, d]), k: try linear("attn.k", [inner, d]),
                              v: try linear("attn.v", [inner, d]), o: try linear("attn.o", [d, inner]),
                              positionBias: table,
                              gate: try linear("ffn.gate.0", [config.ffnDim, d]), fc1: try linear("ffn.fc1", [config.ffnDim, d]),
                              fc2: try linear("ffn.fc2", [d, config.ffnDim]))
            return try quantization.map { try block.quantized(to: $0) } ?? block
        }
        let encoder = UMT5Encoder(config: config, backend: backend,
                                  tokenEmbedding: try b.tensor("token_embedding.weight", shape: [config.vocabulary, d]),
                                  blocks: blocks, finalNorm: try b.tensor("norm.weight", shape: [d]))
        try b.finish()
        return encoder
    }
}
