/// A minimal reader of the protobuf wire format: enough to walk a message field by field.
///
/// Wire format (protobuf encoding spec): a message is a sequence of (key, value) records; the key is a
/// varint `field_number << 3 | wire_type`. Wire types: 0 varint, 1 fixed64, 2 length-delimited
/// (bytes, strings, nested messages), 5 fixed32. Groups (3, 4) are obsolete and refused.
/// Every read is bounds-checked; malformed input raises `ProtobufReader.Error`.
struct ProtobufReader {
    /// What went wrong, with the byte offset where it was found.
    struct Error: Swift.Error, CustomStringConvertible {
        var offset: Int
        var message: String
        var description: String { "protobuf: \(message) at byte \(offset)" }
    }

    /// One field's value as it appears on the wire.
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed32(UInt32)
    }

    private let bytes: ArraySlice<UInt8>
    private var position: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.position = bytes.startIndex
    }

    /// The next field, or nil at the end of the message.
    mutating func next() throws -> (field: Int, value: Value)? {
        if position >= bytes.endIndex { return nil }
        let start = position
        let key = try readVarint()
        let field = Int(key >> 3)
        guard field > 0 else { throw Error(offset: start, message: "field number 0") }
        switch key & 7 {
        case 0:
            return (field, .varint(try readVarint()))
        case 1:
            return (field, .fixed64(try readFixed(8)))
        case 2:
            let length = try readVarint()
            guard length <= UInt64(bytes.endIndex - position) else {
                throw Error(offset: start, message: "field \(field) claims \(length) bytes, only \(bytes.endIndex - position) remain")
            }
            let slice = bytes[position..<(position + Int(length))]
            position += Int(length)
            return (field, .bytes(slice))
        case 5:
            return (field, .fixed32(UInt32(try readFixed(4))))
        default:
            throw Error(offset: start, message: "unsupported wire type \(key & 7) for field \(field)")
        }
    }

    private mutating func readVarint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = position
        while true {
            guard position < bytes.endIndex else { throw Error(offset: start, message: "truncated varint") }
            guard shift < 64 else { throw Error(offset: start, message: "varint longer than 10 bytes") }
            let byte = bytes[position]
            position += 1
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    private mutating func readFixed(_ count: Int) throws -> UInt64 {
        guard bytes.endIndex - position >= count else {
            throw Error(offset: position, message: "truncated fixed\(count * 8) value")
        }
        var result: UInt64 = 0
        for i in 0..<count { result |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
        position += count
        return result
    }
}

extension ProtobufReader.Value {
    /// The value as a bool, if it was sent as a varint.
    var bool: Bool? { if case let .varint(v) = self { return v != 0 }; return nil }
    /// The value as a 32-bit signed integer (protobuf `int32`), if it was sent as a varint.
    var int32: Int32? { if case let .varint(v) = self { return Int32(truncatingIfNeeded: v) }; return nil }
    /// The value as a `float`, if it was sent as fixed32.
    var float: Float? { if case let .fixed32(v) = self { return Float(bitPattern: v) }; return nil }
    /// The raw bytes of a length-delimited value.
    var data: ArraySlice<UInt8>? { if case let .bytes(b) = self { return b }; return nil }
    /// A length-delimited value decoded as UTF-8, if it is valid UTF-8.
    var string: String? {
        guard case let .bytes(b) = self else { return nil }
        return String(validating: b, as: UTF8.self)
    }
}
