import ReelCore

/// Anything that hands out named tensors: a weight file, a set of shards, or tensors in memory.
public protocol TensorSource: AnyObject {
    var keys: [String] { get }
    func shape(of key: String) -> Shape?
    /// Loads `key` onto `backend`, converted to `dtype` when given.
    func load(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor
}

/// Tensors already in memory, by name (tests, merged sources).
public final class InMemoryTensors: TensorSource {
    public var tensors: [String: Tensor]
    public init(_ tensors: [String: Tensor]) { self.tensors = tensors }
    public var keys: [String] { tensors.keys.sorted() }
    public func shape(of key: String) -> Shape? { tensors[key]?.shape }
    public func load(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor {
        guard let t = tensors[key] else { throw ReelError.weights(message: "missing key '\(key)'") }
        var out = t
        if t.backend !== backend {
            let host = try t.backend.downloadFloats(t)
            out = try backend.tensor(host, shape: t.shape, dtype: dtype ?? t.dtype)
        }
        if let dtype, out.dtype != dtype { out = try backend.cast(out, to: dtype) }
        return out
    }
}

/// A rule that turns a checkpoint's key into Reel's canonical (original Wan) name; data, not code.
public enum KeyRule: Sendable {
    /// Drop a prefix when the key has it.
    case dropPrefix(String)
    /// Replace a substring everywhere.
    case replace(String, String)
    /// Replace a substring only in keys that start with `prefix`.
    case replaceIn(prefix: String, String, String)
    /// Replace the whole key.
    case rename(String, String)

    func apply(_ key: String) -> String {
        switch self {
        case let .dropPrefix(p): key.hasPrefix(p) ? String(key.dropFirst(p.count)) : key
        case let .replace(a, b): key.replacingOccurrences(of: a, with: b)
        case let .replaceIn(prefix, a, b): key.hasPrefix(prefix) ? key.replacingOccurrences(of: a, with: b) : key
        case let .rename(a, b): key == a ? b : key
        }
    }
}

/// Binds a model's weights strictly: every canonical key must exist with the expected shape, and
/// every key of the source must be used, or loading fails with a message that names the keys.
public final class WeightBinder {
    public let source: any TensorSource
    public let backend: any Backend
    public let dtype: DType
    /// canonical name -> source key
    private var index: [String: String] = [:]
    private var used: Set<String> = []
    /// Source keys that are accounted for elsewhere (e.g. consumed by a LoRA merge).
    private var ignored: Set<String> = []

    public init(source: any TensorSource, rules: [KeyRule], backend: any Backend, dtype: DType) throws {
        self.source = source
        self.backend = backend
        self.dtype = dtype
        for key in source.keys {
            let canonical = rules.reduce(key) { $1.apply($0) }
            if let other = index[canonical] {
                throw ReelError.weights(message: "keys '\(other)' and '\(key)' both map to '\(canonical)'")
            }
            index[canonical] = key
        }
    }

    public var canonicalKeys: [String] { index.keys.sorted() }
    public func contains(_ name: String) -> Bool { index[name] != nil }
    public func shape(_ name: String) -> Shape? { index[name].flatMap { source.shape(of: $0) } }

    /// The tensor named `name`, checked against `shape` (nil: any shape), loaded onto `target` (default: `backend`;
    /// e.g. a host backend for weights that live in host memory, `WanDiT.load(streaming:)`).
    public func tensor(_ name: String, shape: Shape?, on target: (any Backend)? = nil) throws -> Tensor {
        let backend = target ?? self.backend
        guard let key = index[name] else { throw ReelError.weights(message: "missing weight '\(name)'") }
        if let shape, let actual = source.shape(of: key), actual.count == shape.count, actual != shape {
            // Same element count, other rank (e.g. modulation [1, 6, C] as [6, C]): a reshape is fine.
            used.insert(key)
            return try source.load(key, on: backend, as: dtype).reshaped(shape)
        }
        if let shape, let actual = source.shape(of: key), actual != shape {
            throw ReelError.weights(message: "'\(key)' has shape \(actual), expected \(shape)")
        }
        used.insert(key)
        return try source.load(key, on: backend, as: dtype)
    }

    public func optionalTensor(_ name: String, shape: Shape?) throws -> Tensor? {
        contains(name) ? try tensor(name, shape: shape) : nil
    }

    /// Marks source keys as used by something other than `tensor(_:shape:)`.
    public func markUsed(_ names: [String]) { for n in names { if let k = index[n] { ignored.insert(k) } } }

    /// Throws if any key of the source was never bound.
    public func finish() throws {
        let unused = source.keys.filter { !used.contains($0) && !ignored.contains($0) }
        if !unused.isEmpty {
            let list = unused.prefix(8).joined(separator: ", ")
            throw ReelError.weights(message: "\(unused.count) unused weight(s): \(list)\(unused.count > 8 ? ", ..." : "")")
        }
    }
}
