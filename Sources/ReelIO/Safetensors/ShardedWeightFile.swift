// A sharded checkpoint (the Hugging Face / diffusers layout): an index file
//
//   diffusion_pytorch_model.safetensors.index.json
//   {"metadata": {"total_size": 5676070912},
//    "weight_map": {"blocks.0.attn1.to_q.weight": "diffusion_pytorch_model-00001-of-00002.safetensors", ...}}
//
// beside the shard files it names. Shards are opened with `WeightFiles.open`, so an index of
// PyTorch zip shards (`pytorch_model.bin.index.json`) works too.
import Foundation
import ReelCore

/// The tensors of every shard named by a `*.index.json`, as one weight file.
public final class ShardedWeightFile: WeightFile {
    public let path: String
    public var format: String { "sharded index (\(shards.count) shards)" }
    public let keys: [String]
    /// The index's `metadata` object, values as JSON text (`total_size` -> "5676070912").
    public let metadata: [String: String]
    /// Shard file name (as the index writes it) -> the opened shard.
    public let shards: [String: any WeightFile]
    private let shardOf: [String: String]

    /// Opens the index at `path` and every shard it names (relative to the index's folder).
    public convenience init(path: String) throws {
        let file = try MappedFile(path: path)
        try self.init(indexPath: path, contents: Data(file.bytes(at: 0, count: file.size)))
    }

    init(indexPath path: String, contents: Data) throws {
        self.path = path
        func bad(_ message: String) -> ReelError { .badFile(path: path, message: message) }
        let json: JSON
        do {
            json = try JSON.parse(contents)
        } catch {
            throw bad("index is not valid JSON: \(error.message)")
        }
        guard case .object(let root) = json else { throw bad("index is \(json.kind), expected a JSON object") }
        guard case .object(let map)? = root["weight_map"] else {
            throw bad("index has no \"weight_map\" object (expected the diffusers/transformers sharded layout)")
        }
        var metadata: [String: String] = [:]
        if case .object(let m)? = root["metadata"] {
            for (k, v) in m {
                if case .string(let s) = v { metadata[k] = s } else { metadata[k] = v.description }
            }
        }
        var shardOf: [String: String] = [:]
        for (key, value) in map {
            guard case .string(let file) = value else { throw bad("weight_map entry '\(key)' is \(value.kind), expected a file name") }
            guard !file.isEmpty, !file.hasPrefix("/"), !file.split(separator: "/").contains("..") else {
                throw bad("weight_map entry '\(key)' names '\(file)'; shards must be relative paths inside the index's folder")
            }
            shardOf[key] = file
        }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
        var shards: [String: any WeightFile] = [:]
        for file in Set(shardOf.values).sorted() {
            let shardPath = folder.appendingPathComponent(file).path
            guard FileManager.default.fileExists(atPath: shardPath) else {
                throw bad("shard '\(file)' named by the weight_map is missing (looked for \(shardPath))")
            }
            shards[file] = try WeightFiles.open(shardPath, folder: false, index: false)
        }
        for (key, file) in shardOf where !shards[file]!.contains(key) {
            throw bad("weight_map puts '\(key)' in '\(file)', which has no such tensor")
        }
        self.metadata = metadata
        self.shards = shards
        self.shardOf = shardOf
        self.keys = shardOf.keys.sorted()
    }

    public func info(_ key: String) throws -> TensorInfo {
        guard let file = shardOf[key], let shard = shards[file] else { throw missing(key) }
        return try shard.info(key)
    }

    public func tensor(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor {
        guard let file = shardOf[key], let shard = shards[file] else { throw missing(key) }
        return try shard.tensor(key, on: backend, as: dtype)
    }
}
