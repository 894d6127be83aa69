// The safetensors format (https://github.com/huggingface/safetensors):
//
//   u64 little-endian N | N bytes of UTF-8 JSON header | data section
//
// The header is one JSON object. Each tensor is an entry
//   "name": {"dtype": "BF16", "shape": [1536, 1536], "data_offsets": [begin, end]}
// with offsets relative to the start of the data section, and an optional entry
//   "__metadata__": {"key": "value", ...}   (strings only).
// Writers pad the header with spaces so the data section starts 8-byte aligned.
//
// Everything is validated before a single element is read: the header length lies in the file and
// is at most 100 MB, the header is a JSON object, every dtype is known, shapes are non-negative,
// end - begin == element count * element size, every range lies in the data section, and no two
// tensors overlap. A file that passes can be mapped and used without further checks.
import Foundation
import ReelCore

/// A safetensors file, memory-mapped. Tensors load without a copy on a `HostBackend` when no dtype
/// conversion is asked.
public final class SafetensorsFile: WeightFile {
    public let path: String
    public var format: String { "safetensors" }
    public let keys: [String]
    public let metadata: [String: String]
    private let entries: [String: StoredTensor]

    /// The largest header Reel accepts (the limit of the reference implementation).
    public static let maxHeaderBytes = 100_000_000

    /// Opens and validates `path`.
    public convenience init(path: String) throws {
        try self.init(mapped: MappedFile(path: path))
    }

    init(mapped file: MappedFile) throws {
        path = file.path
        func bad(_ message: String) -> ReelError { .badFile(path: file.path, message: message) }

        guard let n64 = file.littleEndian(at: 0, width: 8) else {
            throw bad("only \(file.size) bytes: a safetensors file starts with an 8-byte header length")
        }
        guard n64 <= UInt64(Self.maxHeaderBytes) else {
            throw bad("header length \(n64) is larger than the \(Self.maxHeaderBytes)-byte limit (corrupt or not safetensors)")
        }
        let n = Int(n64)
        guard file.contains(offset: 8, count: n) else {
            throw bad("header length \(n) runs past the end of the file (\(file.size) bytes): the file is truncated or corrupt")
        }
        let dataStart = 8 + n
        let dataSize = file.size - dataStart

        let header: JSON
        do {
            header = try JSON.parse(Data(file.bytes(at: 8, count: n)))
        } catch {
            throw bad("header is not valid JSON: \(error.message)")
        }
        guard case .object(let object) = header else {
            throw bad("header is \(header.kind), expected a JSON object of tensors")
        }

        var metadata: [String: String] = [:]
        var entries: [String: StoredTensor] = [:]
        var ranges: [(begin: Int, end: Int, key: String)] = []
        for (key, value) in object {
            if key == "__metadata__" {
                guard case .object(let m) = value else { throw bad("__metadata__ is \(value.kind), expected an object of strings") }
                for (k, v) in m {
                    guard case .string(let s) = v else { throw bad("__metadata__ entry '\(k)' is \(v.kind), expected a string") }
                    metadata[k] = s
                }
                continue
            }
            let entry = try Self.entry(key, value, dataSize: dataSize, bad: bad)
            ranges.append((entry.begin, entry.end, key))
            entries[key] = StoredTensor(file: file, storageOffset: dataStart + entry.begin,
                                        storageByteCount: entry.end - entry.begin, type: entry.type,
                                        shape: entry.shape, elementOffset: 0, strides: nil, bigEndian: false)
        }
        ranges.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        for (a, b) in zip(ranges, ranges.dropFirst()) where b.begin < a.end {
            throw bad("tensors '\(a.key)' (bytes \(a.begin)..<\(a.end)) and '\(b.key)' (bytes \(b.begin)..<\(b.end)) overlap")
        }
        self.metadata = metadata
        self.entries = entries
        self.keys = entries.keys.sorted()
    }

    private static func entry(_ key: String, _ value: JSON, dataSize: Int, bad: (String) -> ReelError) throws
        -> (type: StoredType, shape: Shape, begin: Int, end: Int) {
        guard case .object(let e) = value else { throw bad("entry '\(key)' is \(value.kind), expected an object") }
        guard case .string(let name)? = e["dtype"] else { throw bad("tensor '\(key)' has no dtype string") }
        let type: StoredType
        if let d = DType(safetensorsName: name) { type = .native(d) }
        else if name == "F64" { type = .f64 }
        else {
            throw bad("tensor '\(key)' has dtype \(name), which Reel does not read "
                + "(supported: \(DType.allCases.map(\.safetensorsName).joined(separator: ", ")), F64)")
        }
        guard case .array(let dimValues)? = e["shape"] else { throw bad("tensor '\(key)' has no shape array") }
        var dims: [Int] = []
        for d in dimValues {
            guard case .int(let i) = d, i >= 0 else {
                throw bad("tensor '\(key)' has a shape entry that is not a non-negative integer (\(d))")
            }
            dims.append(i)
        }
        guard case .array(let offsets)? = e["data_offsets"], offsets.count == 2,
              case .int(let begin) = offsets[0], case .int(let end) = offsets[1] else {
            throw bad("tensor '\(key)' needs data_offsets [begin, end] of two integers")
        }
        guard begin >= 0, begin <= end, end <= dataSize else {
            throw bad("tensor '\(key)' has data_offsets [\(begin), \(end)] outside the data section of \(dataSize) bytes (truncated file?)")
        }
        guard let count = CheckedSize.product(dims), count.multipliedReportingOverflow(by: type.size).overflow == false else {
            throw bad("tensor '\(key)' has a shape \(dims) too large to address")
        }
        guard end - begin == count * type.size else {
            throw bad("tensor '\(key)' is \(name) \(Shape(dims)) = \(count * type.size) bytes, but data_offsets [\(begin), \(end)] hold \(end - begin)")
        }
        return (type, Shape(dims), begin, end)
    }

    public func info(_ key: String) throws -> TensorInfo {
        guard let e = entries[key] else { throw missing(key) }
        return e.info
    }

    public func tensor(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor {
        guard let e = entries[key] else { throw missing(key) }
        return try e.load(key, on: backend, as: dtype)
    }
}
