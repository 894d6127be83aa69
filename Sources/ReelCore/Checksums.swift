/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as PNG chunks and zip use it.
public struct CRC32: Sendable {
    private static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    private var state: UInt32 = 0xFFFF_FFFF

    public init() {}

    public mutating func update(_ bytes: some Sequence<UInt8>) {
        var c = state
        for b in bytes { c = Self.table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        state = c
    }

    public var value: UInt32 { state ^ 0xFFFF_FFFF }

    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var c = CRC32()
        c.update(bytes)
        return c.value
    }
}

/// Adler-32, the checksum that ends a zlib stream (RFC 1950).
public struct Adler32: Sendable {
    private var a: UInt32 = 1
    private var b: UInt32 = 0

    public init() {}

    public mutating func update(_ bytes: some Collection<UInt8>) {
        // 5552 is the largest n with 255 n (n + 1) / 2 + (n + 1)(65520) < 2^32: reduce once per run.
        var i = bytes.startIndex
        while i != bytes.endIndex {
            let end = bytes.index(i, offsetBy: 5552, limitedBy: bytes.endIndex) ?? bytes.endIndex
            for byte in bytes[i..<end] {
                a &+= UInt32(byte)
                b &+= a
            }
            a %= 65521
            b %= 65521
            i = end
        }
    }

    public var value: UInt32 { (b << 16) | a }

    public static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        var s = Adler32()
        s.update(bytes)
        return s.value
    }
}
