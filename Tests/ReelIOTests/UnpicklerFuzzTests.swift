import Foundation
import Testing
@testable import ReelIO

/// Mutated and random pickles must end in a value or a `PickleError`: never a crash or a hang.
@Suite struct UnpicklerFuzzTests {
    /// A small deterministic generator (SplitMix64), so failures reproduce.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func run(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var u = Unpickler(raw, limits: Unpickler.Limits(stack: 4096, marks: 256, memo: 4096))
            defer { u.release() }
            _ = try? u.run()
        }
    }

    /// The data.pkl of a fixture written by torch.save.
    static func realPickle(_ name: String) throws -> [UInt8] {
        let file = try MappedFile(path: TestFiles.fixture(name))
        let zip = try ZipArchive(file: file)
        let entry = try #require(zip.entries.first { $0.key.hasSuffix("/data.pkl") }?.value)
        return Array(try zip.data(of: entry))
    }

    @Test func mutatedTorchPickles() throws {
        var rng = SplitMix(state: 1)
        for name in ["views.pt", "state_dict.pt"] {
            let original = try Self.realPickle(name)
            for position in original.indices {
                for value in [0xFF, UInt8.random(in: 0...255, using: &rng)] as [UInt8] {
                    var bytes = original
                    bytes[position] = value
                    Self.run(bytes)
                }
                Self.run(Array(original[..<position]))  // every truncation
            }
        }
    }

    @Test func randomOpcodeSoup() {
        var rng = SplitMix(state: 2)
        // Opcodes the machine knows, weighted toward containers, memo and calls.
        let ops: [UInt8] = [0x28, 0x29, 0x2E, 0x30, 0x31, 0x32, 0x4E, 0x5D, 0x61, 0x65, 0x68, 0x71, 0x73, 0x74, 0x75,
                            0x7D, 0x85, 0x86, 0x87, 0x88, 0x89, 0x94, 0x52, 0x62, 0x51, 0x4B, 0x8C, 0x93]
        for _ in 0..<3000 {
            var bytes: [UInt8] = [0x80, 4]
            for _ in 0..<Int.random(in: 1...80, using: &rng) {
                if Bool.random(using: &rng) { bytes.append(ops.randomElement(using: &rng)!) }
                else { bytes.append(UInt8.random(in: 0...255, using: &rng)) }
            }
            Self.run(bytes)
        }
    }
}
