import Foundation
@testable import ReelModels
import Testing

/// The building blocks on their own: the piece trie against a naive search, the protobuf reader
/// on hand-made messages, and SentencePiece model rules that the fixture models do not reach.
@Suite struct TokenizerUnitTests {
    @Test func pieceTrieFindsExactlyThePrefixes() {
        var generator = SplitMix64(seed: 11)
        let alphabet: [[UInt8]] = ["a", "b", "c", "é", "猫", "▁"].map { Array($0.utf8) }
        var entries: [(bytes: [UInt8], id: Int32)] = []
        for id in 0..<3000 {
            var key: [UInt8] = []
            for _ in 0..<(1 + Int(generator.next() % 6)) { key += alphabet[Int(generator.next() % UInt64(alphabet.count))] }
            entries.append((key, Int32(id)))
        }
        var lastId: [[UInt8]: Int32] = [:]
        for e in entries { lastId[e.bytes] = e.id }  // duplicates: the last one wins
        let trie = PieceTrie(entries)
        for _ in 0..<300 {
            var text: [UInt8] = []
            for _ in 0..<(Int(generator.next() % 12)) { text += alphabet[Int(generator.next() % UInt64(alphabet.count))] }
            let start = text.isEmpty ? 0 : Int(generator.next() % UInt64(text.count))
            var found: [(Int32, Int)] = []
            text.withUnsafeBufferPointer { buf in trie.forEachPrefix(buf, from: start, end: buf.count) { found.append(($0, $1)) } }
            var expected: [(Int32, Int)] = []
            if start < text.count {
                for end in (start + 1)...text.count {
                    if let id = lastId[Array(text[start..<end])] { expected.append((id, end)) }
                }
            }
            #expect(found.map(\.0) == expected.map(\.0))
            #expect(found.map(\.1) == expected.map(\.1))
        }
    }

    @Test func protobufReaderRejectsDamage() throws {
        // field 1, length 5, but only 2 bytes follow
        var r = ProtobufReader([0x0A, 0x05, 0x41, 0x42][...])
        #expect(throws: ProtobufReader.Error.self) { _ = try r.next() }
        // a varint that never ends
        var v = ProtobufReader([UInt8](repeating: 0xFF, count: 12)[...])
        #expect(throws: ProtobufReader.Error.self) { _ = try v.next() }
        // field 2 fixed32 = 1.5f, then field 3 varint 4
        var ok = ProtobufReader([0x15, 0x00, 0x00, 0xC0, 0x3F, 0x18, 0x04][...])
        let a = try #require(try ok.next())
        #expect(a.field == 2 && a.value.float == 1.5)
        let b = try #require(try ok.next())
        #expect(b.field == 3 && b.value.int32 == 4)
        #expect(try ok.next() == nil)
    }

    /// A ModelProto written by hand: pieces (piece, score, type), trainer_spec and normalizer_spec.
    static func model(_ pieces: [(String, Float, Int32)], byteFallback: Bool = false, modelType: UInt8 = 1) -> [UInt8] {
        func varint(_ v: UInt64) -> [UInt8] {
            var v = v, out: [UInt8] = []
            while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
            return out + [UInt8(v)]
        }
        func field(_ n: Int, _ bytes: [UInt8]) -> [UInt8] { varint(UInt64(n << 3 | 2)) + varint(UInt64(bytes.count)) + bytes }
        var out: [UInt8] = []
        for (piece, score, type) in pieces {
            let bits = score.bitPattern
            let body = field(1, Array(piece.utf8)) + [0x15, UInt8(bits & 0xFF), UInt8(bits >> 8 & 0xFF), UInt8(bits >> 16 & 0xFF), UInt8(bits >> 24)]
                + [0x18] + varint(UInt64(type))
            out += field(1, body)
        }
        // trainer_spec: unk_id 2, eos_id 1, pad_id 0, byte_fallback
        let trainer: [UInt8] = [0x18, modelType, 0xC0, 0x02, 0x02, 0xD0, 0x02, 0x01, 0xD8, 0x02, 0x00] + (byteFallback ? [0x98, 0x02, 0x01] : [])
        out += field(2, trainer)
        out += field(3, [0x18, 0x01])  // normalizer_spec: add_dummy_prefix true, no charsmap
        return out
    }

    @Test func sentencePieceRules() throws {
        let pieces: [(String, Float, Int32)] = [
            ("<pad>", 0, 3), ("</s>", 0, 3), ("<unk>", 0, 2), ("<x>", 0, 4),
            ("▁", -1, 1), ("a", -2, 1), ("b", -2, 1), ("ab", -2.5, 1), ("▁ab", -2.2, 1), ("c", -3, 5),
        ]
        let spm = try SentencePieceModel(bytes: Self.model(pieces))
        #expect(spm.encode("ab") == [8])
        #expect(spm.encode("a<x>b") == [4, 5, 3, 6])        // user-defined symbol kept whole
        #expect(spm.encode("c c") == [4, 2, 4, 2])          // unused piece never matches: unknown
        #expect(spm.encode("ddd") == [4, 2])                // consecutive unknowns fused
        #expect(spm.encode("   ") == [])
        #expect(spm.decode([4, 5, 3, 2, 1]) == "a<x> \u{2047} ")
        let duplicate = Self.model(pieces + [("a", -4, 1)])
        #expect(throws: ReelTokenizerError.self) { try SentencePieceModel(bytes: duplicate) }
        do {
            _ = try SentencePieceModel(bytes: Self.model(pieces, modelType: 2))  // BPE
            Issue.record("a BPE model was accepted")
        } catch {
            #expect("\(error)".contains("model type 2"))
        }
        let bytes = [("<pad>", Float(0), Int32(3)), ("</s>", 0, 3), ("<unk>", 0, 2), ("▁", -1, 1), ("a", -2, 1)]
            + (0..<256).map { (String(format: "<0x%02X>", $0), Float(0), Int32(6)) }
        let withBytes = try SentencePieceModel(bytes: Self.model(bytes, byteFallback: true))
        #expect(withBytes.encode("aé") == [3, 4, 5 + 0xC3, 5 + 0xA9])  // unknown é as its UTF-8 bytes
        #expect(withBytes.decode([3, 4, 5 + 0xC3, 5 + 0xA9, 5 + 0xFF]) == "aé\u{FFFD}")
    }

    /// Decoding corner cases, with the outputs the Python libraries give (nfkc model: 0 <pad>,
    /// 1 </s>, 2 <unk>, 3 <cut>, 4 "▁", 5 "▁a"; bytes model: 68 <0x41>, 198 <0xC3>, 260 "▁a").
    @Test func decodingCornerCases() throws {
        let spm = try TokenizerFixtures.tokenizer("nfkc", "spiece.model")
        #expect(spm.decode([1, 5]) == "a")
        #expect(spm.decode([0, 5, 1, 5]) == "a a")
        #expect(spm.decode([2, 5]) == " \u{2047}  a")
        #expect(spm.decode([4, 4, 5]) == "a")
        #expect(spm.decode([3, 5]) == "<cut> a")
        #expect(spm.decode([5, 2, 2, 5]) == "a \u{2047}  \u{2047}  a")
        let bytes = try TokenizerFixtures.tokenizer("bytes", "spiece.model")
        #expect(bytes.decode([68, 260]) == "A a")
        #expect(bytes.decode([68, 68, 260]) == "AA a")
        #expect(bytes.decode([198, 260]) == "\u{FFFD} a")
        #expect(bytes.decode([260, 68, 198]) == "aA\u{FFFD}")
        // tokenizers' Metaspace decoder drops every U+2581 of the first token
        let metaspace = HFDecoder.metaspace(replacement: "\u{2581}", prepend: .always)
        #expect(metaspace.decodeChain(["\u{2581}\u{2581}a", "\u{2581}b\u{2581}", "c"]).joined() == "a b c")
        #expect(metaspace.decodeChain(["a\u{2581}b", "\u{2581}c"]).joined() == "ab c")
        #expect(HFDecoder.byteFallback.decodeChain(["<0xC3>", "<0xA9>", "x", "<0xFF>", "<0xC3>"]).joined() == "\u{E9}x\u{FFFD}\u{FFFD}")
    }
}
