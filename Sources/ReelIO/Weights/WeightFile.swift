import Foundation
import ReelCore

/// The dtype and shape of one tensor in a weight file, known without reading its elements.
public struct TensorInfo: Sendable, Equatable, CustomStringConvertible {
    /// The dtype `WeightFile.tensor(_:on:as:)` returns when no dtype is asked for.
    public let dtype: DType
    /// The tensor's shape, outermost axis first.
    public let shape: Shape
    /// The element type as the file stores it ("bf16", or "f64" for float64, which loads as f32).
    public let storedType: String

    /// `storedType` defaults to `dtype`'s name (no conversion on load).
    public init(dtype: DType, shape: Shape, storedType: String? = nil) {
        self.dtype = dtype
        self.shape = shape
        self.storedType = storedType ?? dtype.rawValue
    }

    /// Number of elements.
    public var parameterCount: Int { shape.count }

    public var description: String {
        storedType == dtype.rawValue ? "\(dtype) \(shape)" : "\(dtype) (stored \(storedType)) \(shape)"
    }
}

/// A file (or set of files) of named tensors: safetensors, a PyTorch zip checkpoint, or a sharded
/// set behind a `*.safetensors.index.json`. Open one with `WeightFiles.open(_:)`.
///
/// Reading is lazy: opening validates the layout, and each `tensor(_:on:as:)` call reads (or,
/// on a host backend, maps without copying) only that tensor's bytes.
public protocol WeightFile: AnyObject, Sendable {
    /// The path the file was opened from.
    var path: String { get }
    /// A short name of the format ("safetensors", "PyTorch checkpoint", ...).
    var format: String { get }
    /// Every tensor name, sorted. Nested checkpoint dictionaries appear as "."-joined paths
    /// (`generator.model.blocks.0.self_attn.q.weight`); see `scoped(to:)`.
    var keys: [String] { get }
    /// Non-tensor entries: safetensors' `__metadata__`, or a checkpoint's scalar leaves
    /// (`step` -> "5"), by the same "."-joined names.
    var metadata: [String: String] { get }
    /// The dtype and shape of `key`; throws `ReelError.badFile` naming the key when it is absent.
    func info(_ key: String) throws -> TensorInfo
    /// The tensor `key` on `backend`, converted to `dtype` when given (through float32).
    func tensor(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor
}

extension WeightFile {
    /// The tensor `key` on `backend` in the dtype the file stores.
    public func tensor(_ key: String, on backend: any Backend) throws -> Tensor {
        try tensor(key, on: backend, as: nil)
    }

    /// Whether the file has a tensor named `key`.
    public func contains(_ key: String) -> Bool { (try? info(key)) != nil }

    /// Total number of elements of every tensor.
    public var parameterCount: Int {
        keys.reduce(0) { $0 + ((try? info($1))?.parameterCount ?? 0) }
    }

    /// The tensors under `prefix` (a "."-joined path such as "generator"), with the prefix and
    /// its dot removed from their names. LongLive checkpoints hold the model under `generator`,
    /// `generator_ema` or `model`; a model loader picks one with this.
    public func scoped(to prefix: String) -> any WeightFile {
        ScopedWeightFile(base: self, prefix: prefix)
    }

    /// The first "."-separated component of every key, sorted (the checkpoint's top-level entries).
    public var topLevelNames: [String] {
        Array(Set(keys.map { String($0.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)[0]) })).sorted()
    }

    func missing(_ key: String) -> ReelError {
        .badFile(path: path, message: "no tensor named '\(key)' (the file has \(keys.count) tensors)")
    }
}

/// The tensors of another weight file whose names start with a prefix, prefix removed.
final class ScopedWeightFile: WeightFile {
    let base: any WeightFile
    let prefix: String
    let keys: [String]
    let metadata: [String: String]

    private let keySet: Set<String>

    init(base: any WeightFile, prefix: String) {
        self.base = base
        self.prefix = prefix.isEmpty || prefix.hasSuffix(".") ? prefix : prefix + "."
        let p = self.prefix
        keys = base.keys.filter { $0.hasPrefix(p) }.map { String($0.dropFirst(p.count)) }
        keySet = Set(keys)
        metadata = Dictionary(uniqueKeysWithValues: base.metadata.filter { $0.key.hasPrefix(p) }
            .map { (String($0.key.dropFirst(p.count)), $0.value) })
    }

    var path: String { base.path }
    var format: String { base.format }
    func info(_ key: String) throws -> TensorInfo {
        do { return try base.info(prefix + key) } catch { throw missing(key) }
    }
    func tensor(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor {
        guard keySet.contains(key) else { throw missing(key) }
        return try base.tensor(prefix + key, on: backend, as: dtype)
    }
}

/// Opens weight files of any supported format.
public enum WeightFiles {
    /// Opens `path`, detecting the format from its content, not its extension:
    /// a zip archive is a PyTorch checkpoint, a JSON object with a `weight_map` is a sharded
    /// index, and a file starting with a sane 8-byte header length and `{` is safetensors.
    ///
    /// A folder (a diffusers component such as `transformer/`) opens its one `*.index.json`, or
    /// else its one `*.safetensors` file.
    public static func open(_ path: String) throws -> any WeightFile {
        try open(path, folder: true, index: true)
    }

    /// Opens `path`, following at most one folder and one index, so links cannot loop.
    static func open(_ path: String, folder: Bool, index: Bool) throws -> any WeightFile {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            guard folder else { throw ReelError.badFile(path: path, message: "is a directory, expected a weight file") }
            return try open(try weightFile(inFolder: path), folder: false, index: index)
        }
        let file = try MappedFile(path: path)
        switch try detect(file) {
        case .safetensors: return try SafetensorsFile(mapped: file)
        case .torchZip: return try TorchCheckpoint(mapped: file)
        case .index:
            guard index else { throw ReelError.badFile(path: path, message: "is an index, but an index may name only weight files") }
            return try ShardedWeightFile(indexPath: path, contents: Data(file.bytes(at: 0, count: file.size)))
        }
    }

    /// The weight file a folder holds: its single index, or its single safetensors file.
    static func weightFile(inFolder path: String) throws -> String {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: path).sorted() } catch {
            throw ReelError.badFile(path: path, message: "cannot list the folder: \(error.localizedDescription)")
        }
        let indexes = names.filter { $0.hasSuffix(".index.json") }
        let singles = names.filter { $0.hasSuffix(".safetensors") }
        let url = URL(fileURLWithPath: path)
        if indexes.count == 1 { return url.appendingPathComponent(indexes[0]).path }
        if indexes.isEmpty && singles.count == 1 { return url.appendingPathComponent(singles[0]).path }
        let found = indexes.isEmpty ? singles : indexes
        throw ReelError.badFile(path: path, message: found.isEmpty
            ? "is a folder with no *.safetensors or *.index.json file; name the weight file"
            : "is a folder with several candidates (\(found.joined(separator: ", "))); name one of them")
    }

    enum Format { case safetensors, torchZip, index }

    static func detect(_ file: MappedFile) throws -> Format {
        let head = file.bytes(at: 0, count: min(file.size, 16))
        if head.count >= 4, head[0] == 0x50, head[1] == 0x4B,
           (head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6) {
            return .torchZip
        }
        // Safetensors: an 8-byte little-endian header length, then the JSON header. A header
        // length has zero bytes at its top; JSON text never holds a NUL.
        if head.count >= 9, head[8] == UInt8(ascii: "{") {
            let n = file.littleEndian(at: 0, width: 8) ?? .max
            if n <= UInt64(file.size - 8) || head.prefix(8).contains(0) { return .safetensors }
        }
        if let first = head.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }), first == UInt8(ascii: "{") {
            return .index
        }
        if head.count >= 2, head[0] == 0x80, (2...5).contains(head[1]) {
            throw ReelError.badFile(path: file.path, message: "a bare pickle (PyTorch's legacy format from before 1.6, or pickle.dump); "
                + "Reel reads zip checkpoints: re-save it with torch.save(torch.load(path), path) in a recent PyTorch")
        }
        if file.size < 9 {
            throw ReelError.badFile(path: file.path, message: "only \(file.size) bytes: too short to be a weight file")
        }
        let hex = head.prefix(8).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
        throw ReelError.badFile(path: file.path, message: "not a safetensors file, PyTorch zip checkpoint or safetensors index (starts with \(hex))")
    }
}
