/// A read-only Darts-clone double-array trie, the structure SentencePiece stores its precompiled
/// normalization map in.
///
/// Format (darts-clone `DoubleArrayImpl`): an array of little-endian 32-bit units. For a unit `u`:
/// `hasLeaf = (u >> 8) & 1`, `value = u & 0x7FFF_FFFF`, `label = u & 0x8000_00FF`,
/// `offset = (u >> 10) << ((u & (1 << 9)) >> 6)`. Traversal starts at unit 0: `pos ^= offset(unit)`,
/// then per key byte `c`: `pos ^= c`, the unit there must carry label `c`, `pos ^= offset`, and a
/// leaf under it holds the value of the key read so far. Lookups are bounds-checked: a corrupt
/// array can only end a search early, never read out of range.
struct DoubleArrayTrie: Sendable {
    private let units: [UInt32]

    /// Reads `bytes` (a whole number of 4-byte units) as the trie's unit array.
    init(units bytes: ArraySlice<UInt8>) throws {
        guard bytes.count % 4 == 0 else {
            throw ReelTokenizerError.malformed("trie size \(bytes.count) is not a multiple of 4 bytes")
        }
        var units = [UInt32]()
        units.reserveCapacity(bytes.count / 4)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            units.append(UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)
            i += 4
        }
        self.units = units
    }

    /// A match: the value stored for a key, and the key's length in bytes.
    struct Match: Equatable {
        var value: Int
        var length: Int
    }

    /// Every key that is a prefix of `key[start...]`, shortest first, at most `limit` of them.
    /// With `stopAtNul`, a zero byte ends the key (the behaviour of HF tokenizers' Rust port);
    /// without it, a zero byte is matched like any other (SentencePiece passes the length).
    func commonPrefixSearch(_ key: UnsafeBufferPointer<UInt8>, from start: Int, end: Int? = nil,
                            limit: Int = .max, stopAtNul: Bool = false) -> [Match] {
        var results: [Match] = []
        forEachPrefix(key, from: start, end: end ?? key.count, stopAtNul: stopAtNul) { match in
            results.append(match)
            return results.count < limit
        }
        return results
    }

    /// Calls `body` for every key that prefixes `key[start..<end]`, shortest first, until it
    /// returns false. Allocates nothing.
    @inline(__always)
    func forEachPrefix(_ key: UnsafeBufferPointer<UInt8>, from start: Int, end: Int, stopAtNul: Bool,
                       _ body: (Match) -> Bool) {
        guard !units.isEmpty else { return }
        var pos = Int(offset(units[0]))
        var i = start
        while i < end {
            let c = key[i]
            if stopAtNul && c == 0 { return }
            pos ^= Int(c)
            guard pos >= 0, pos < units.count else { return }
            let unit = units[pos]
            guard unit & 0x8000_00FF == UInt32(c) else { return }
            pos ^= Int(offset(unit))
            if (unit >> 8) & 1 == 1 {
                guard pos >= 0, pos < units.count else { return }
                if !body(Match(value: Int(units[pos] & 0x7FFF_FFFF), length: i + 1 - start)) { return }
            }
            i += 1
        }
    }

    private func offset(_ unit: UInt32) -> UInt32 {
        (unit >> 10) << ((unit & (1 << 9)) >> 6)
    }
}
