/// SentencePiece's precompiled normalization map (`NormalizerSpec.precompiled_charsmap`, and the
/// base64 `precompiled_charsmap` of HF tokenizers' `Precompiled` normalizer).
///
/// Format (sentencepiece `normalizer.cc`, `DecodePrecompiledCharsMap`): a little-endian uint32 giving
/// the trie's size in bytes, the Darts double-array trie (keys: UTF-8 source sequences; values:
/// byte offsets into the string blob), then the string blob of NUL-terminated UTF-8 replacements.
struct PrecompiledCharsMap: Sendable {
    private let trie: DoubleArrayTrie
    private let normalized: [UInt8]
    /// `transform` of each single ASCII byte, precomputed for the common case.
    private(set) var asciiTransforms: [ArraySlice<UInt8>?] = []

    init(_ blob: [UInt8]) throws {
        guard blob.count >= 4 else { throw ReelTokenizerError.malformed("precompiled charsmap shorter than its 4-byte header") }
        let trieSize = Int(blob[0]) | Int(blob[1]) << 8 | Int(blob[2]) << 16 | Int(blob[3]) << 24
        guard trieSize <= blob.count - 4 else {
            throw ReelTokenizerError.malformed("precompiled charsmap trie size \(trieSize) exceeds the \(blob.count - 4) bytes present")
        }
        trie = try DoubleArrayTrie(units: blob[4..<(4 + trieSize)])
        normalized = Array(blob[(4 + trieSize)...])
        var table: [ArraySlice<UInt8>?] = []
        for b in UInt8(0)..<128 { table.append([b].withUnsafeBufferPointer { transform($0) }) }
        asciiTransforms = table
    }

    /// The replacement stored at `offset` in the string blob (up to its NUL), or nil if out of range.
    private func replacement(at offset: Int) -> ArraySlice<UInt8>? {
        guard offset >= 0, offset < normalized.count else { return nil }
        var end = offset
        while end < normalized.count, normalized[end] != 0 { end += 1 }
        return normalized[offset..<end]
    }

    /// SentencePiece's rule: the longest key that prefixes `text[start...]` (among the first 32
    /// matches, as `Normalizer::NormalizePrefix` collects them). Returns the replacement and the
    /// number of input bytes it consumes.
    func longestMatch(_ text: UnsafeBufferPointer<UInt8>, from start: Int) -> (replacement: ArraySlice<UInt8>, length: Int)? {
        var best: DoubleArrayTrie.Match?
        var count = 0
        trie.forEachPrefix(text, from: start, end: text.count, stopAtNul: false) { m in
            if best == nil || m.length > best!.length { best = m }
            count += 1
            return count < 32
        }
        guard let best, let r = replacement(at: best.value) else { return nil }
        return (r, best.length)
    }

    /// HF tokenizers' rule (`spm_precompiled::Precompiled::transform`): the first (shortest) key that
    /// prefixes `chunk`, searched within the chunk only and stopping at a NUL byte. The whole chunk is
    /// replaced by it, even when the key is shorter than the chunk.
    func transform(_ chunk: UnsafeBufferPointer<UInt8>) -> ArraySlice<UInt8>? {
        var found: DoubleArrayTrie.Match?
        trie.forEachPrefix(chunk, from: 0, end: chunk.count, stopAtNul: true) { found = $0; return false }
        guard let first = found else { return nil }
        return replacement(at: first.value)
    }
}
