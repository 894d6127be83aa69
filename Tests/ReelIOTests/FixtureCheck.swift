import Foundation
import ReelCore
import ReelCPU
import ReelIO
import Testing

/// Compares a weight file with the `<file>.expected.json` that tools/fixtures/make_torch_fixtures.py
/// wrote from PyTorch's own view of it.
enum FixtureCheck {
    struct Expected: Decodable {
        struct Entry: Decodable {
            let dtype: String
            let shape: [Int]
            let values: [Double]
        }
        let tensors: [String: Entry]
        let metadata: [String: String]
    }

    static func expected(_ path: String) throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: path + ".expected.json")))
    }

    /// Every tensor on both a host and a copying backend, values exact; metadata equal.
    static func compare(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let exp = try expected(path)
        let file = try WeightFiles.open(path)
        #expect(file.keys == exp.tensors.keys.sorted(), sourceLocation: sourceLocation)
        #expect(file.metadata == exp.metadata, sourceLocation: sourceLocation)
        for backend in [CPUBackend(threads: 1), TestBackend()] as [any Backend] {
            for (key, e) in exp.tensors {
                let info = try file.info(key)
                #expect(info.dtype.rawValue == e.dtype && info.shape == Shape(e.shape), "\(path) \(key): \(info)", sourceLocation: sourceLocation)
                let t = try file.tensor(key, on: backend)
                #expect(t.shape == Shape(e.shape), sourceLocation: sourceLocation)
                #expect(try t.toFloats() == e.values.map { Float($0) }, "\(path) \(key) on \(backend.name)", sourceLocation: sourceLocation)
                if t.dtype.isFloatingPoint && t.count > 0 {
                    let f = try file.tensor(key, on: backend, as: .f32)
                    #expect(try f.toFloats() == e.values.map { Float($0) }, "\(key) as f32", sourceLocation: sourceLocation)
                }
            }
        }
    }
}
