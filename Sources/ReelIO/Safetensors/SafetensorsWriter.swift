#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ReelCore

/// Writes safetensors files (the format is described in SafetensorsFile.swift).
///
/// Output is deterministic: header keys sorted by name, data ordered by element size (largest
/// first, so every tensor starts aligned to its element size) then name, and the header padded
/// with spaces to a multiple of 8 bytes. The file is written to a temporary name beside `path`
/// and renamed into place, so a failed write never leaves a half-written file under `path`.
///
/// ```swift
/// var writer = SafetensorsWriter()
/// try writer.add("blocks.0.attn.q.weight", tensor)
/// writer.metadata["format"] = "pt"
/// try writer.write(to: "model.safetensors")
/// ```
public struct SafetensorsWriter {
    private enum Source {
        case tensor(Tensor)
        case bytes([UInt8])
    }

    private struct Entry {
        let dtype: DType
        let shape: Shape
        let source: Source
        var byteCount: Int { shape.count * dtype.size }
    }

    private var entries: [String: Entry] = [:]
    /// Free-form string metadata stored under `__metadata__`.
    public var metadata: [String: String] = [:]

    /// An empty file: add tensors, set metadata, then `write(to:)`.
    public init() {}

    /// Adds a tensor from any backend; its bytes are downloaded when the file is written.
    public mutating func add(_ name: String, _ tensor: Tensor) throws {
        try check(name)
        entries[name] = Entry(dtype: tensor.dtype, shape: tensor.shape, source: .tensor(tensor))
    }

    /// Adds host bytes already in `dtype`'s little-endian encoding.
    public mutating func add(_ name: String, bytes: [UInt8], dtype: DType, shape: Shape) throws {
        try check(name)
        try require(shape.isValid && bytes.count == shape.count * dtype.size, "safetensors",
                    "'\(name)': \(bytes.count) bytes for \(dtype) \(shape), expected \(shape.count * dtype.size)")
        entries[name] = Entry(dtype: dtype, shape: shape, source: .bytes(bytes))
    }

    private func check(_ name: String) throws {
        try require(name != "__metadata__", "safetensors", "'__metadata__' is reserved and cannot name a tensor")
        try require(entries[name] == nil, "safetensors", "tensor '\(name)' added twice")
    }

    /// The header and the order of the data section.
    func layout() -> (header: [UInt8], order: [String]) {
        let order = entries.keys.sorted { a, b in
            let (ea, eb) = (entries[a]!, entries[b]!)
            return ea.dtype.size != eb.dtype.size ? ea.dtype.size > eb.dtype.size : a < b
        }
        var begin: [String: Int] = [:]
        var offset = 0
        for name in order {
            begin[name] = offset
            offset += entries[name]!.byteCount
        }
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += Self.quote("__metadata__") + ":{"
                + metadata.keys.sorted().map { Self.quote($0) + ":" + Self.quote(metadata[$0]!) }.joined(separator: ",") + "}"
            first = false
        }
        for name in entries.keys.sorted() {
            let e = entries[name]!
            let b = begin[name]!
            json += (first ? "" : ",") + Self.quote(name) + ":{\"dtype\":\"\(e.dtype.safetensorsName)\",\"shape\":["
                + e.shape.dims.map(String.init).joined(separator: ",") + "],\"data_offsets\":[\(b),\(b + e.byteCount)]}"
            first = false
        }
        json += "}"
        var header = Array(json.utf8)
        while (8 + header.count) % 8 != 0 { header.append(0x20) }
        return (header, order)
    }

    /// Writes the file. Throws `ReelError.badFile` naming `path` when it cannot be written.
    public func write(to path: String) throws {
        let (header, order) = layout()
        let temporary = path + ".partial-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw ReelError.badFile(path: path, message: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var closed = false
        defer {
            if !closed { close(fd); unlink(temporary) }
        }
        func put(_ bytes: UnsafeRawBufferPointer) throws {
            var done = 0
            while done < bytes.count {
                let n = posixWrite(fd, bytes.baseAddress! + done, bytes.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ReelError.badFile(path: path, message: "write failed: \(String(cString: strerror(errno)))")
                }
                done += n
            }
        }
        var length = UInt64(header.count).littleEndian
        try withUnsafeBytes(of: &length) { try put($0) }
        try header.withUnsafeBytes { try put($0) }
        for name in order {
            let e = entries[name]!
            switch e.source {
            case .bytes(let b): try b.withUnsafeBytes { try put($0) }
            case .tensor(let t):
                var b = [UInt8](repeating: 0, count: e.byteCount)
                try b.withUnsafeMutableBytes { try t.backend.download(t, into: $0) }
                try b.withUnsafeBytes { try put($0) }
            }
        }
        closed = true
        if close(fd) != 0 {
            unlink(temporary)
            throw ReelError.badFile(path: path, message: "close failed: \(String(cString: strerror(errno)))")
        }
        if rename(temporary, path) != 0 {
            let message = String(cString: strerror(errno))
            unlink(temporary)
            throw ReelError.badFile(path: path, message: "cannot rename \(temporary) into place: \(message)")
        }
    }

    /// A JSON string literal.
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

#if canImport(Glibc)
private let posixWrite = Glibc.write
#elseif canImport(Darwin)
private let posixWrite = Darwin.write
#endif
