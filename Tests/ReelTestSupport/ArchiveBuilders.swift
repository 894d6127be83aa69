import Foundation
import ReelCore

/// Builds pickle bytes opcode by opcode, for hand-made (often hostile) checkpoints.
public struct PickleBuilder {
    public var bytes: [UInt8] = [0x80, 2]  // PROTO 2

    public init() {}

    public mutating func op(_ code: UInt8) { bytes.append(code) }
    public mutating func mark() { op(0x28) }
    public mutating func stop() { op(0x2E) }
    public mutating func string(_ s: String) {
        op(0x58)
        bytes.appendLE(UInt32(s.utf8.count))
        bytes.append(contentsOf: Array(s.utf8))
    }
    public mutating func int(_ v: Int) {
        if let small = Int32(exactly: v) {
            op(0x4A) // BININT
            bytes.appendLE(small)
        } else {
            op(0x8A); bytes.append(8) // LONG1 of 8 bytes
            bytes.appendLE(Int64(v))
        }
    }
    public mutating func global(_ module: String, _ name: String) {
        op(0x63)
        bytes.append(contentsOf: Array("\(module)\n\(name)\n".utf8))
    }
    public mutating func ints(_ values: [Int]) {
        mark()
        for v in values { int(v) }
        op(0x74) // TUPLE
    }

    /// `_rebuild_tensor_v2(storage 'key' of `numel` floats, offset, size, stride, False, OrderedDict())`.
    public mutating func tensor(storage key: String, numel: Int, offset: Int = 0, size: [Int], stride: [Int],
                         storageType: String = "FloatStorage") {
        global("torch._utils", "_rebuild_tensor_v2")
        mark()
        mark(); string("storage"); global("torch", storageType); string(key); string("cpu"); int(numel); op(0x74)
        op(0x51) // BINPERSID
        int(offset)
        ints(size)
        ints(stride)
        op(0x89) // NEWFALSE
        global("collections", "OrderedDict"); op(0x29); op(0x52) // OrderedDict()
        op(0x74) // TUPLE
        op(0x52) // REDUCE
    }

    /// `{name: tensor, ...}` of float storages with contiguous shapes.
    public static func stateDict(_ tensors: [(String, String, [Int])]) -> [UInt8] {
        var p = PickleBuilder()
        p.op(0x7D) // EMPTY_DICT
        p.mark()
        for (name, key, shape) in tensors {
            p.string(name)
            var strides = [Int](repeating: 1, count: shape.count)
            for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
            p.tensor(storage: key, numel: shape.reduce(1, *), size: shape, stride: strides)
        }
        p.op(0x75) // SETITEMS
        p.stop()
        return p.bytes
    }
}

/// Builds stored (uncompressed) zip archives, optionally with zip64 records.
public struct ZipBuilder {
    public var entries: [(name: String, data: [UInt8])] = []

    public init() {}

    public mutating func add(_ name: String, _ data: [UInt8]) { entries.append((name, data)) }

    public func build(zip64: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        var central: [UInt8] = []
        for (name, data) in entries {
            let offset = out.count
            let nameBytes = Array(name.utf8)
            out.appendLE(UInt32(0x0403_4b50))
            out.appendLE(UInt16(zip64 ? 45 : 20)); out.appendLE(UInt16(0)); out.appendLE(UInt16(0))
            out.appendLE(UInt32(0)); out.appendLE(CRC32.checksum(data))  // time and date, crc
            out.appendLE(UInt32(data.count)); out.appendLE(UInt32(data.count))
            out.appendLE(UInt16(nameBytes.count)); out.appendLE(UInt16(0))
            out += nameBytes
            out += data

            var extra: [UInt8] = []
            if zip64 {
                extra.appendLE(UInt16(1)); extra.appendLE(UInt16(24))
                extra.appendLE(UInt64(data.count)); extra.appendLE(UInt64(data.count)); extra.appendLE(UInt64(offset))
            }
            central.appendLE(UInt32(0x0201_4b50))
            central.appendLE(UInt16(45)); central.appendLE(UInt16(45)); central.appendLE(UInt16(0)); central.appendLE(UInt16(0))
            central.appendLE(UInt32(0)); central.appendLE(CRC32.checksum(data))
            central.appendLE(zip64 ? UInt32.max : UInt32(data.count)); central.appendLE(zip64 ? UInt32.max : UInt32(data.count))
            central.appendLE(UInt16(nameBytes.count)); central.appendLE(UInt16(extra.count)); central.appendLE(UInt16(0))
            central.appendLE(UInt16(0)); central.appendLE(UInt16(0)); central.appendLE(UInt32(0))
            central.appendLE(zip64 ? UInt32.max : UInt32(offset))
            central += nameBytes + extra
        }
        let dirOffset = out.count
        out += central
        if zip64 {
            let record = out.count
            out.appendLE(UInt32(0x0606_4b50)); out.appendLE(UInt64(44))
            out.appendLE(UInt16(45)); out.appendLE(UInt16(45)); out.appendLE(UInt32(0)); out.appendLE(UInt32(0))
            out.appendLE(UInt64(entries.count)); out.appendLE(UInt64(entries.count))
            out.appendLE(UInt64(central.count)); out.appendLE(UInt64(dirOffset))
            out.appendLE(UInt32(0x0706_4b50)); out.appendLE(UInt32(0)); out.appendLE(UInt64(record)); out.appendLE(UInt32(1))
        }
        out.appendLE(UInt32(0x0605_4b50))
        out.appendLE(UInt16(0)); out.appendLE(UInt16(0))
        out.appendLE(zip64 ? UInt16.max : UInt16(entries.count)); out.appendLE(zip64 ? UInt16.max : UInt16(entries.count))
        out.appendLE(zip64 ? UInt32.max : UInt32(central.count)); out.appendLE(zip64 ? UInt32.max : UInt32(dirOffset))
        out.appendLE(UInt16(0))
        return out
    }

    /// A checkpoint archive: `archive/data.pkl`, `archive/byteorder`, `archive/data/<key>` storages.
    public static func checkpoint(pickle: [UInt8], storages: [String: [UInt8]], zip64: Bool = false) -> [UInt8] {
        var z = ZipBuilder()
        z.add("archive/data.pkl", pickle)
        z.add("archive/byteorder", Array("little".utf8))
        for key in storages.keys.sorted() { z.add("archive/data/\(key)", storages[key]!) }
        return z.build(zip64: zip64)
    }
}

public func floatBytes(_ values: [Float]) -> [UInt8] {
    values.withUnsafeBytes { Array($0) }
}

extension Array where Element == UInt8 {
    public mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}
