// A PyTorch checkpoint as `torch.save` writes it since PyTorch 1.6: an uncompressed zip archive
//
//   <name>/data.pkl        the pickled object (a state dict, or a dict of them)
//   <name>/byteorder       "little" or "big" (absent in old files: little)
//   <name>/data/<key>      the raw bytes of each storage, referenced from data.pkl by key
//   <name>/version, .format_version, .storage_alignment, ...   ignored
//
// `<name>` is the file's stem when it was saved, so any single top folder is accepted. data.pkl is
// read by the restricted Unpickler (Unpickler.swift): only tensors, storages and plain data.
import ReelCore

/// A PyTorch `.pt` / `.pth` zip checkpoint, memory-mapped. Nested dicts are flattened with "."
/// joined keys (`generator.model.blocks.0.ffn.0.weight`); scalar leaves go to `metadata`.
/// Contiguous little-endian tensors load without a copy on a `HostBackend`; views with strides or
/// offsets are gathered into new contiguous tensors.
public final class TorchCheckpoint: WeightFile {
    public let path: String
    public var format: String { "PyTorch checkpoint" }
    public let keys: [String]
    public let metadata: [String: String]
    private let tensors: [String: StoredTensor]

    /// Nested containers deeper than this are refused.
    static let maxDepth = 64

    /// Opens `path`, reads its directory and runs `data.pkl` on the restricted unpickler; tensor
    /// bytes are read only when a tensor is asked for.
    public convenience init(path: String) throws {
        try self.init(mapped: MappedFile(path: path))
    }

    init(mapped file: MappedFile) throws {
        path = file.path
        func bad(_ message: String) -> ReelError { .badFile(path: file.path, message: message) }
        let zip = try ZipArchive(file: file)

        let pickles = zip.entries.keys.filter { $0.hasSuffix("/data.pkl") && $0.split(separator: "/").count == 2 }
        guard pickles.count == 1, let pickleName = pickles.first else {
            if zip.entries.keys.contains(where: { $0.hasSuffix("constants.pkl") }) {
                throw bad("a TorchScript archive (torch.jit.save), not a state dict: save model.state_dict() with torch.save")
            }
            throw bad(pickles.isEmpty ? "zip archive has no <folder>/data.pkl: not a PyTorch checkpoint"
                                      : "zip archive has several data.pkl files: \(pickles.sorted())")
        }
        let root = String(pickleName.dropLast("data.pkl".count))
        if zip.entries[root + "constants.pkl"] != nil || zip.entries.keys.contains(where: { $0.hasPrefix(root + "code/") }) {
            throw bad("a TorchScript archive (torch.jit.save), not a state dict: save model.state_dict() with torch.save")
        }
        var bigEndian = false
        if let order = zip.entries[root + "byteorder"] {
            let text = String(decoding: try zip.verifiedData(of: order), as: UTF8.self)
            switch text {
            case "little": bigEndian = false
            case "big": bigEndian = true
            default: throw bad("\(root)byteorder says '\(text.prefix(20))', expected 'little' or 'big'")
            }
        }

        // Parse and flatten; the unpickler's containers are emptied whatever happens.
        var unpickler = Unpickler(try zip.verifiedData(of: zip.entries[pickleName]!))
        defer { unpickler.release() }
        var refs: [String: TorchTensorRef] = [:]
        var metadata: [String: String] = [:]
        do {
            let value = try unpickler.run()
            try Self.flatten(value, prefix: "", depth: 0, into: &refs, &metadata)
        } catch {
            throw bad("\(pickleName) at byte \(unpickler.position): \(error)")
        }

        var tensors: [String: StoredTensor] = [:]
        for (key, ref) in refs {
            let storageName = root + "data/" + ref.storage.key
            guard let entry = zip.entries[storageName] else {
                throw bad("tensor '\(key)' uses storage '\(ref.storage.key)', but the archive has no \(storageName)")
            }
            let data = try zip.data(of: entry)
            guard let needed = ref.storage.byteCount, needed <= data.count else {
                throw bad("storage \(storageName) holds \(data.count) bytes, but tensor '\(key)' needs a storage of "
                    + "\(ref.storage.count) \(ref.storage.type.map { "\($0)" } ?? "byte") elements (truncated archive?)")
            }
            tensors[key] = StoredTensor(file: file, storageOffset: entry.dataOffset, storageByteCount: needed,
                                        type: ref.type, shape: Shape(ref.shape), elementOffset: ref.offset,
                                        strides: ref.strides, bigEndian: bigEndian)
        }
        self.tensors = tensors
        self.metadata = metadata
        self.keys = tensors.keys.sorted()
    }

    /// Walks dicts, lists and tuples; tensors and scalars become entries named by their path.
    private static func flatten(_ value: PickleValue, prefix: String, depth: Int,
                                into tensors: inout [String: TorchTensorRef], _ metadata: inout [String: String]) throws(PickleError) {
        guard depth <= maxDepth else { throw .limit("containers nested more than \(maxDepth) levels deep") }
        func child(_ name: String) -> String { prefix.isEmpty ? name : prefix + "." + name }
        func leaf(_ text: String) throws(PickleError) {
            guard tensors[prefix] == nil, metadata[prefix] == nil else { throw .malformed("two entries flatten to the name '\(prefix)'") }
            metadata[prefix] = text
        }
        switch value {
        case .dict(let d):
            for (k, v) in d.entries { try flatten(v, prefix: child(k.description), depth: depth + 1, into: &tensors, &metadata) }
        case .list(let l):
            for (i, v) in l.items.enumerated() { try flatten(v, prefix: child(String(i)), depth: depth + 1, into: &tensors, &metadata) }
        case .tuple(let t):
            for (i, v) in t.items.enumerated() { try flatten(v, prefix: child(String(i)), depth: depth + 1, into: &tensors, &metadata) }
        case .tensor(let ref):
            let name = prefix.isEmpty ? "tensor" : prefix
            guard tensors[name] == nil, metadata[name] == nil else { throw .malformed("two entries flatten to the name '\(name)'") }
            tensors[name] = ref
        case .none: try leaf("None")
        case .bool(let b): try leaf(b ? "True" : "False")
        case .int(let i): try leaf(String(i))
        case .float(let f): try leaf(String(f))
        case .string(let s): try leaf(s)
        case .bytes(let b): try leaf("<\(b.count) bytes>")
        case .storage(let s): throw .refused("entry '\(prefix)' is a bare storage ('\(s.key)'), not a tensor")
        case .global(.dtype(_, let name)): try leaf("torch.\(name)")  // a dtype in a saved config
        case .global(let g): throw .refused("entry '\(prefix)' is the function \(g.name), not data")
        }
    }

    public func info(_ key: String) throws -> TensorInfo {
        guard let t = tensors[key] else { throw missing(key) }
        return t.info
    }

    public func tensor(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor {
        guard let t = tensors[key] else { throw missing(key) }
        return try t.load(key, on: backend, as: dtype)
    }
}
