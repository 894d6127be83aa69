import ReelCore

// A contiguous range of the DiT's transformer layers as a model of its own: StreamDiffusionV2's block
// pipelining (`streamv2v/inference_pipe.py`, `block_num` per rank) puts each device's layers, and only
// those, on that device. The small non-layer weights (patch, time and text embeddings, the head) are loaded
// on every stage, as each rank of the reference holds them.

/// The weights of `source` with only the layers `range`, renumbered from 0 (`blocks.7.` becomes `blocks.0.`
/// for a range starting at 7; any prefix such as `model.` is kept). Other layers' keys are hidden.
public final class LayerRangeSource: TensorSource {
    public let source: any TensorSource
    public let range: Range<Int>
    private let map: [String: String]       // renamed key -> source key

    public init(_ source: any TensorSource, layers range: Range<Int>) {
        self.source = source
        self.range = range
        var map: [String: String] = [:]
        for key in source.keys {
            if let (renamed, layer) = Self.renumbered(key, by: range.lowerBound) {
                if range.contains(layer) { map[renamed] = key }
            } else {
                map[key] = key
            }
        }
        self.map = map
    }

    public var keys: [String] { map.keys.sorted() }
    public func shape(of key: String) -> Shape? { map[key].flatMap { source.shape(of: $0) } }
    public func load(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor {
        guard let original = map[key] else { throw ReelError.weights(message: "missing key '\(key)'") }
        return try source.load(original, on: backend, as: dtype)
    }

    /// `key` with its layer number (after `blocks.`) lowered by `offset`, and the original number; nil for a
    /// key outside the layers.
    static func renumbered(_ key: String, by offset: Int) -> (String, Int)? {
        guard let marker = key.range(of: "blocks.") else { return nil }
        let rest = key[marker.upperBound...]
        let digits = rest.prefix(while: \.isNumber)
        guard !digits.isEmpty, let layer = Int(digits), rest.dropFirst(digits.count).first == "." else { return nil }
        return (String(key[..<marker.upperBound]) + String(layer - offset) + String(rest.dropFirst(digits.count)), layer)
    }
}

extension WanDiT {
    /// Layers `range` of the model in `source` on `backend` (a model of `range.count` layers: its caches and
    /// prompt contexts cover those layers only). The range must lie within the source's layers.
    public static func loadLayers(_ range: Range<Int>, from source: any TensorSource, heads: Int? = nil,
                                  backend: any Backend, dtype: DType = .f32) throws -> WanDiT {
        var total = 0
        while source.shape(of: "blocks.\(total).self_attn.q.weight") != nil
                || source.keys.contains(where: { $0.hasSuffix("blocks.\(total).self_attn.q.weight") }) { total += 1 }
        guard !range.isEmpty, range.lowerBound >= 0, range.upperBound <= total else {
            throw ReelError.input("layers \(range.lowerBound)..<\(range.upperBound) are not within the model's \(total) layers")
        }
        return try load(from: LayerRangeSource(source, layers: range), heads: heads, backend: backend, dtype: dtype)
    }
}
