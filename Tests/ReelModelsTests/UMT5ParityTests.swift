import Foundation
import Testing
import ReelCore
import ReelCPU
import ReelIO
@testable import ReelModels

/// Parity with transformers' UMT5EncoderModel (fixture: tools/fixtures/umt5/make_umt5_fixture.py),
/// a small random configuration with the real structure, prompts of 1, 7, 100 and 512 tokens.
@Suite struct UMT5ParityTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/umt5")
    let backend = CPUBackend()

    @Test func matchesTransformers() throws {
        let encoder = try UMT5Encoder.load(from: try WeightFileTensors(path: Self.dir.appendingPathComponent("umt5.safetensors").path),
                                           backend: backend)
        #expect(encoder.config.heads == 4 && encoder.config.headDim == 8 && encoder.config.layers == 2)
        let cases = try WeightFiles.open(Self.dir.appendingPathComponent("case.safetensors").path)
        for n in [1, 7, 100, 512] {
            let ids = try cases.tensor("ids.\(n)", on: backend).toFloats().map { Int32($0) }
            let expected = try cases.tensor("out.\(n)", on: backend).toFloats()
            let ours = try encoder.encode(ids).toFloats()
            var num = 0.0, den = 0.0
            for i in ours.indices {
                num += Double(ours[i] - expected[i]) * Double(ours[i] - expected[i])
                den += Double(expected[i]) * Double(expected[i])
            }
            print("umT5 parity, \(n) tokens: nmse \(num / den)")
            #expect(num / den < 1e-10, "length \(n)")
        }
    }

    @Test func bucketsMatchT5Formula() {
        // Relative position j - i: exact below 8, logarithmic to 128, the upper half for j > i.
        let b = UMT5Encoder.relativeBuckets(length: 300, buckets: 32, maxDistance: 128)
        #expect(b[0 * 300 + 0] == 0)
        #expect(b[0 * 300 + 7] == 16 + 7)
        #expect(b[7 * 300 + 0] == 7)
        #expect(b[0 * 300 + 16] == 16 + 10)   // 8 + floor(log(2)/log(16) * 8) = 10
        #expect(b[0 * 300 + 299] == 31)
        #expect(b[299 * 300 + 0] == 15)
    }

    @Test func rejectsOutOfVocabularyIds() throws {
        let encoder = try UMT5Encoder.load(from: try WeightFileTensors(path: Self.dir.appendingPathComponent("umt5.safetensors").path),
                                           backend: backend)
        #expect(throws: ReelError.self) { try encoder.encode([5, 300]) }
        #expect(throws: ReelError.self) { try encoder.encode([]) }
    }
}
