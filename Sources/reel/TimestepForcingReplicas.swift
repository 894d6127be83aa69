import ReelCore
import ReelModels
import ReelPipeline

/// The DiT replicas of `--pipeline timestep-forcing`: the loaded model on the first device, the same file loaded
/// again (LoRA, quantization and KV-cache storage alike) on each other device of `--devices`.
enum TimestepForcingReplicas {
    static func load(files: ModelFiles, first: WanDiT, on backends: [any Backend], dtype: DType,
                     quantization: LinearQuantization?, kvCache: KVCacheStorage) throws -> [WanDiT] {
        guard let path = files.dit else { throw files.missing(.dit, option: "--dit FILE") }
        guard first.backend.device.isSame(as: backends[0].device) else {
            throw ReelError.input("timestep forcing: the loaded DiT is on \(first.backend.device.name), the first stage's "
                                  + "device is \(backends[0].device.name)")
        }
        return try [first] + backends.dropFirst().map { backend in
            var dit = try WanDiT.load(path: path, lora: files.lora, heads: files.heads, ema: files.ema, backend: backend,
                                      dtype: dtype)
            if let quantization { dit = try dit.quantized(quantization) }
            dit.kvCache = kvCache
            return dit
        }
    }

    /// Random weights of `config` made once on the first device and loaded on every device of `backends`.
    static func random(_ config: WanDiTConfig, on backends: [any Backend], dtype: DType,
                       quantization: LinearQuantization?, kvCache: KVCacheStorage) throws -> [WanDiT] {
        let weights = try WanDiT.randomWeights(config, on: backends[0], dtype: dtype)
        return try backends.map { backend in
            let dit = try WanDiT.load(from: weights, heads: config.heads, backend: backend, dtype: dtype)
            return try (quantization.map { try dit.quantized($0) } ?? dit).withKVCache(kvCache)
        }
    }
}
