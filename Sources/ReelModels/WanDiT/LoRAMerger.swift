import ReelCore

/// Merges a PEFT LoRA (LongLive's `lora.pt`: `base_model.model.<module>.lora_A.weight` `[r, in]` and
/// `lora_B.weight` `[out, r]`) into base weights at load: W += scale * B A.
/// LongLive applies it unmerged at run time (alpha 256 / rank 256 = 1.0); merged differs only by rounding.
final class LoRAMerger {
    private var pairs: [String: (a: String, b: String)] = [:]
    private var merged: Set<String> = []
    let source: any TensorSource
    let scale: Float
    let backend: any Backend
    let dtype: DType

    init(source: any TensorSource, scale: Float, backend: any Backend, dtype: DType) throws {
        self.source = source; self.scale = scale; self.backend = backend; self.dtype = dtype
        var a: [String: String] = [:], b: [String: String] = [:]
        for key in source.keys {
            var k = key
            for prefix in ["generator_lora.", "base_model.model.", "model."] where k.hasPrefix(prefix) { k.removeFirst(prefix.count) }
            k = k.replacingOccurrences(of: ".default", with: "")
            if k.hasSuffix(".lora_A.weight") { a[String(k.dropLast(".lora_A.weight".count))] = key }
            else if k.hasSuffix(".lora_B.weight") { b[String(k.dropLast(".lora_B.weight".count))] = key }
            else { throw ReelError.weights(message: "LoRA key '\(key)' is neither lora_A nor lora_B") }
        }
        for (module, ka) in a {
            guard let kb = b[module] else { throw ReelError.weights(message: "LoRA '\(module)' has lora_A but no lora_B") }
            pairs[module] = (ka, kb)
        }
        if let orphan = b.keys.first(where: { a[$0] == nil }) {
            throw ReelError.weights(message: "LoRA '\(orphan)' has lora_B but no lora_A")
        }
    }

    /// `weight` plus the LoRA update for `module` (e.g. "blocks.3.self_attn.q"), or unchanged.
    /// The merge runs on the weight's backend (the device's, or the host's for a streamed block).
    func merge(into weight: Tensor, module: String) throws -> Tensor {
        guard let (ka, kb) = pairs[module] else { return weight }
        let backend = weight.backend
        let a = try source.load(ka, on: backend, as: .f32)   // [r, in]
        let b = try source.load(kb, on: backend, as: .f32)   // [out, r]
        guard a.rank == 2, b.rank == 2, a.shape[0] == b.shape[1], b.shape[0] == weight.shape[0], a.shape[1] == weight.shape[1] else {
            throw ReelError.weights(message: "LoRA '\(module)': A \(a.shape) and B \(b.shape) do not fit weight \(weight.shape)")
        }
        let delta = try backend.matmul(b, a, transposeB: false, bias: nil)  // [out, in]
        let sum = try backend.axpby(1, try backend.cast(weight, to: .f32), scale, delta)
        merged.insert(module)
        return try backend.cast(sum, to: dtype)
    }

    func finish() throws {
        let unused = pairs.keys.filter { !merged.contains($0) }.sorted()
        if !unused.isEmpty {
            throw ReelError.weights(message: "LoRA modules with no matching base weight: \(unused.prefix(6).joined(separator: ", "))")
        }
    }
}
