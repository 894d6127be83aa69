import Foundation
import ReelCore
import ReelCPU
import ReelTestSupport
import Testing
@testable import ReelIO

@Suite struct SafetensorsTests {
    /// Host bytes of `count` elements of `dtype` with distinct, exactly representable values.
    static func sample(_ dtype: DType, count: Int) throws -> [UInt8] {
        let values = (0..<count).map { i -> Float in
            switch dtype {
            case .bool: Float(i % 2)
            case .uint8: Float(i * 7 % 256)
            case .int8: Float(i * 5 % 200 - 100)
            case .fp8e4m3: Float(i % 16) * 0.25 - 2
            default: Float(i) * 0.5 - 3
            }
        }
        return try HostConversion.encode(values, as: dtype)
    }

    @Test func roundTripsEveryDType() throws {
        var writer = SafetensorsWriter()
        var expected: [String: (DType, Shape, [UInt8])] = [:]
        for (i, dtype) in DType.allCases.enumerated() {
            let shape: Shape = i % 3 == 0 ? [3, 5] : (i % 3 == 1 ? [7] : [2, 1, 3])
            let bytes = try Self.sample(dtype, count: shape.count)
            try writer.add("t.\(dtype)", bytes: bytes, dtype: dtype, shape: shape)
            expected["t.\(dtype)"] = (dtype, shape, bytes)
        }
        try writer.add("scalar", bytes: floatBytes([2.5]), dtype: .f32, shape: [])
        try writer.add("empty", bytes: [], dtype: .bf16, shape: [0, 4])
        writer.metadata = ["format": "pt", "quote\"and\\slash\n": "ünïcode ✓"]
        let path = try TestFiles.scratch().appendingPathComponent("all.safetensors").path
        try writer.write(to: path)

        let file = try WeightFiles.open(path)
        #expect(file is SafetensorsFile)
        #expect(file.keys == (Array(expected.keys) + ["scalar", "empty"]).sorted())
        #expect(file.metadata == writer.metadata)
        for backend in [TestBackend(), CPUBackend(threads: 1)] as [any Backend] {
            for (key, (dtype, shape, bytes)) in expected {
                #expect(try file.info(key) == TensorInfo(dtype: dtype, shape: shape))
                let t = try file.tensor(key, on: backend)
                #expect(t.dtype == dtype && t.shape == shape)
                var back = [UInt8](repeating: 0, count: t.byteCount)
                try back.withUnsafeMutableBytes { try backend.download(t, into: $0) }
                #expect(back == bytes, "\(key) on \(backend.name)")
            }
            #expect(try file.tensor("scalar", on: backend).toFloats() == [2.5])
            #expect(try file.tensor("empty", on: backend).shape == [0, 4])
        }
    }

    @Test func hostBackendsMapWithoutCopying() throws {
        var writer = SafetensorsWriter()
        try writer.add("w", bytes: try Self.sample(.bf16, count: 6), dtype: .bf16, shape: [2, 3])
        let path = try TestFiles.scratch().appendingPathComponent("m.safetensors").path
        try writer.write(to: path)
        let file = try SafetensorsFile(path: path)

        let host = CPUBackend(threads: 1)
        let mapped = try file.tensor("w", on: host)
        #expect(mapped.storage is MappedRegion)
        // The CPU backend computes on the mapped bytes directly.
        let x = try host.tensor([1, 0, 0, 0, 1, 0] as [Float], shape: [2, 3])
        let y = try host.linear(x, weight: mapped)   // x [2, 3] . w^T [3, 2] = rows 0 and 1 of w^T
        let w = try mapped.toFloats()
        #expect(try y.toFloats() == [w[0], w[3], w[1], w[4]])
        // A conversion, or a backend that is not a HostBackend, gets its own copy.
        let converted = try file.tensor("w", on: host, as: .f32)
        #expect(!(converted.storage is MappedRegion))
        #expect(try converted.toFloats() == mapped.toFloats())
        let device = TestBackend()
        _ = try file.tensor("w", on: device)
        #expect(device.uploads == 1)
    }

    @Test func unalignedDataIsCopied() throws {
        // A header of odd length puts the data at an odd offset: a bf16 tensor there cannot be used in place.
        var header = #"{"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]}}"#
        while (8 + header.utf8.count) % 2 == 0 { header += " " }
        let path = try Self.rawFile(header: header, data: try HostConversion.encode([1, -2, 0.5], as: .bf16))
        let t = try SafetensorsFile(path: path).tensor("w", on: CPUBackend(threads: 1))
        #expect(!(t.storage is MappedRegion))
        #expect(try t.toFloats() == [1, -2, 0.5])
    }

    @Test func mappedTensorsOutliveTheirFile() throws {
        var writer = SafetensorsWriter()
        try writer.add("w", bytes: floatBytes([1, 2, 3]), dtype: .f32, shape: [3])
        let path = try TestFiles.scratch().appendingPathComponent("o.safetensors").path
        try writer.write(to: path)
        // /proc files report size 0, so read them to the end rather than by their size.
        func mapped() throws -> Bool {
            let maps = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/maps")).readToEnd() ?? Data()
            return String(decoding: maps, as: UTF8.self).contains(path)
        }
        var file: SafetensorsFile? = try SafetensorsFile(path: path)
        var t: Tensor? = try file!.tensor("w", on: CPUBackend(threads: 1))
        file = nil
        #expect(try t!.toFloats() == [1, 2, 3])
        #if os(Linux)
        #expect(try mapped())
        t = nil
        #expect(try !mapped(), "the mapping goes with the last tensor")
        #endif
        _ = t
    }

    @Test func writerIsDeterministicAndAligned() throws {
        func write(_ order: [String]) throws -> [UInt8] {
            var w = SafetensorsWriter()
            for name in order {
                switch name {
                case "odd": try w.add(name, bytes: try Self.sample(.bf16, count: 3), dtype: .bf16, shape: [3])
                case "byte": try w.add(name, bytes: [1], dtype: .uint8, shape: [1])
                default: try w.add(name, bytes: try Self.sample(.f32, count: 2), dtype: .f32, shape: [2])
                }
            }
            w.metadata = ["b": "2", "a": "1"]
            let path = try TestFiles.scratch().appendingPathComponent("d.safetensors").path
            try w.write(to: path)
            return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        }
        let a = try write(["odd", "byte", "f", "g"])
        let b = try write(["g", "f", "byte", "odd"])
        #expect(a == b)
        let headerLength = Int(a[0]) | Int(a[1]) << 8
        #expect((8 + headerLength) % 8 == 0)
        // f32 tensors come first in the data section, so each starts aligned to its size.
        let header = String(decoding: a[8..<(8 + headerLength)], as: UTF8.self)
        #expect(header.contains(#""f":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#))
        #expect(header.hasPrefix(#"{"__metadata__":{"a":"1","b":"2"}"#))
    }

    @Test func writesTensorsFromABackend() throws {
        let backend = TestBackend()
        let t = try backend.tensor([1, -2, 3.5, 4], shape: [2, 2], dtype: .f16)
        var w = SafetensorsWriter()
        try w.add("x", t)
        #expect(throws: ReelError.self) { try w.add("x", t) }
        #expect(throws: ReelError.self) { try w.add("__metadata__", t) }
        #expect(throws: ReelError.self) { try w.add("y", bytes: [1, 2, 3], dtype: .f32, shape: [1]) }
        let path = try TestFiles.scratch().appendingPathComponent("b.safetensors").path
        try w.write(to: path)
        #expect(try SafetensorsFile(path: path).tensor("x", on: backend, as: .f32).toFloats() == [1, -2, 3.5, 4])
    }

    @Test func integerConversionsSaturate() throws {
        var w = SafetensorsWriter()
        try w.add("i64", bytes: [Int64(1) << 40, -(Int64(1) << 40), 7].withUnsafeBytes { Array($0) }, dtype: .int64, shape: [3])
        try w.add("f", bytes: floatBytes([.nan, .infinity, -3.7, 1e30]), dtype: .f32, shape: [4])
        let path = try TestFiles.scratch().appendingPathComponent("i.safetensors").path
        try w.write(to: path)
        let file = try WeightFiles.open(path)
        for backend in [TestBackend(), CPUBackend(threads: 1)] as [any Backend] {
            let i32 = try file.tensor("i64", on: backend, as: .int32)
            var out = [Int32](repeating: 0, count: 3)
            try out.withUnsafeMutableBytes { try backend.download(i32, into: $0) }
            #expect(out == [.max, .min, 7])
            let f = try file.tensor("f", on: backend, as: .int64)
            var longs = [Int64](repeating: 0, count: 4)
            try longs.withUnsafeMutableBytes { try backend.download(f, into: $0) }
            #expect(longs == [0, .max, -3, .max])
        }
    }

    @Test func float64LoadsAsFloat32() throws {
        let values: [Double] = [1.5, -2.25, 1e-3]
        let path = try Self.rawFile(header: #"{"d":{"dtype":"F64","shape":[3],"data_offsets":[0,24]}}"#,
                                    data: values.withUnsafeBytes { Array($0) })
        let file = try WeightFiles.open(path)
        #expect(try file.info("d") == TensorInfo(dtype: .f32, shape: [3], storedType: "f64"))
        #expect(try file.tensor("d", on: CPUBackend(threads: 1)).toFloats() == values.map { Float($0) })
    }

    @Test func readsFilesWrittenByTheReferenceLibrary() throws {
        try FixtureCheck.compare(TestFiles.fixture("reference.safetensors"))
        try FixtureCheck.compare(TestFiles.fixture("sharded.safetensors.index.json"))
        let sharded = try WeightFiles.open(TestFiles.fixture("sharded.safetensors.index.json"))
        #expect(sharded is ShardedWeightFile)
        #expect((sharded as? ShardedWeightFile)?.shards.count == 2)
    }

    /// A tiny WanTransformer3DModel saved by diffusers in three shards: opened by its folder.
    @Test func readsADiffusersShardedModel() throws {
        struct Summary: Decodable { let dtype: String; let shape: [Int]; let sum: Double; let sum_of_squares: Double }
        let expected = try JSONDecoder().decode([String: Summary].self, from: Data(contentsOf: URL(
            fileURLWithPath: TestFiles.fixture("diffusers_sharded.expected.json"))))
        let file = try WeightFiles.open(TestFiles.fixture("diffusers_sharded"))
        #expect((file as? ShardedWeightFile)?.shards.count == 3)
        #expect(file.keys == expected.keys.sorted())
        #expect(file.keys.contains("blocks.0.attn1.to_q.weight"))
        let cpu = CPUBackend(threads: 1)
        for (key, e) in expected {
            let t = try file.tensor(key, on: cpu)
            #expect(t.dtype.rawValue == e.dtype && t.shape == Shape(e.shape), "\(key)")
            let v = try t.toFloats().map(Double.init)
            // bf16 values are exact in float32; only the summation order differs from PyTorch's.
            #expect(abs(v.reduce(0, +) - e.sum) <= 1e-9 * max(1, abs(e.sum)) + 1e-6, "\(key)")
            #expect(abs(v.reduce(0) { $0 + $1 * $1 } - e.sum_of_squares) <= 1e-6 * max(1, e.sum_of_squares), "\(key)")
        }
    }

    // MARK: Bad input

    /// A file of `header` (padded) and `data`, with the header length `length` (the true one by default).
    static func rawFile(header: String, data: [UInt8], length: UInt64? = nil) throws -> String {
        var bytes: [UInt8] = []
        bytes.appendLE(length ?? UInt64(header.utf8.count))
        bytes += Array(header.utf8) + data
        return try TestFiles.write(bytes, name: "bad.safetensors")
    }

    static func message(header: String, data: [UInt8] = [UInt8](repeating: 0, count: 16), length: UInt64? = nil) throws -> String {
        let path = try rawFile(header: header, data: data, length: length)
        return badFileMessage { _ = try SafetensorsFile(path: path) }
    }

    @Test func refusesBadHeaders() throws {
        let ok = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        #expect(try Self.message(header: ok, length: 1 << 40).contains("larger than"))
        #expect(try Self.message(header: ok, length: 5000).contains("past the end"))
        #expect(try Self.message(header: #"{"a": [1, 2"#).contains("not valid JSON"))
        #expect(try Self.message(header: #"[1, 2]"#).contains("expected a JSON object"))
        #expect(try Self.message(header: #"{"a":{"dtype":"U16","shape":[2],"data_offsets":[0,4]}}"#).contains("'a' has dtype U16"))
        #expect(try Self.message(header: #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#).contains("shape"))
        #expect(try Self.message(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#).contains("hold 12"))
        #expect(try Self.message(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#).contains("outside the data section"))
        #expect(try Self.message(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#).contains("outside"))
        #expect(try Self.message(header: #"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#).contains("too large"))
        #expect(try Self.message(header: #"{"a":{"dtype":"F32","shape":[2]}}"#).contains("data_offsets"))
        #expect(try Self.message(header: #"{"__metadata__":{"n":1}}"#).contains("'n' is a number"))
        // Deeply nested JSON is refused by the parser's depth limit, not by a stack overflow.
        #expect(try Self.message(header: String(repeating: "[", count: 200_000)).contains("not valid JSON"))
        #expect(try Self.message(header: "{\"a\":" + String(repeating: "{\"a\":", count: 100_000) + "1" + String(repeating: "}", count: 100_001)).contains("JSON"))
        let overlap = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        #expect(try Self.message(header: overlap).contains("overlap"))
    }

    @Test func refusesTruncatedFiles() throws {
        var w = SafetensorsWriter()
        try w.add("a", bytes: try Self.sample(.f32, count: 6), dtype: .f32, shape: [6])
        try w.add("b", bytes: try Self.sample(.bf16, count: 5), dtype: .bf16, shape: [5])
        let path = try TestFiles.scratch().appendingPathComponent("t.safetensors").path
        try w.write(to: path)
        let whole = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        // Every shorter prefix fails with a message; none crashes.
        for n in 0..<whole.count {
            let cut = try TestFiles.write(Array(whole[..<n]), name: "cut.safetensors")
            let message = badFileMessage { _ = try WeightFiles.open(cut) }
            #expect(!message.isEmpty)
        }
        #expect(badFileMessage { _ = try WeightFiles.open("/nonexistent/x.safetensors") }.contains("cannot open"))
    }

    @Test func foldersOpenTheirOneWeightFile() throws {
        let dir = try TestFiles.scratch()
        #expect(badFileMessage { _ = try WeightFiles.open(dir.path) }.contains("no *.safetensors"))
        let fm = FileManager.default
        for name in ["sharded-00001-of-00002.safetensors", "sharded-00002-of-00002.safetensors", "sharded.safetensors.index.json"] {
            try fm.copyItem(atPath: TestFiles.fixture(name), toPath: dir.appendingPathComponent(name).path)
        }
        #expect(try WeightFiles.open(dir.path) is ShardedWeightFile)
        let single = try TestFiles.scratch()
        try fm.copyItem(atPath: TestFiles.fixture("reference.safetensors"), toPath: single.appendingPathComponent("m.safetensors").path)
        #expect(try WeightFiles.open(single.path).keys.count == 6)
        try fm.copyItem(atPath: TestFiles.fixture("reference.safetensors"), toPath: single.appendingPathComponent("n.safetensors").path)
        #expect(badFileMessage { _ = try WeightFiles.open(single.path) }.contains("several candidates"))
    }

    @Test func indexesAndFoldersCannotLoop() throws {
        let dir = try TestFiles.scratch()
        let index = dir.appendingPathComponent("self.safetensors.index.json")
        try Data(#"{"weight_map": {"w": "self.safetensors.index.json"}}"#.utf8).write(to: index)
        #expect(badFileMessage { _ = try WeightFiles.open(index.path) }.contains("is an index"))
        try Data(#"{"weight_map": {"w": "../x.safetensors"}}"#.utf8).write(to: index)
        #expect(badFileMessage { _ = try WeightFiles.open(index.path) }.contains("relative paths inside"))
        try Data(#"{"weight_map": {"w": "missing.safetensors"}}"#.utf8).write(to: index)
        #expect(badFileMessage { _ = try WeightFiles.open(index.path) }.contains("missing"))
        try Data(#"{"weight_map": {"w": 3}}"#.utf8).write(to: index)
        #expect(badFileMessage { _ = try WeightFiles.open(index.path) }.contains("expected a file name"))
        try Data(#"{"metadata": {}}"#.utf8).write(to: index)
        #expect(badFileMessage { _ = try WeightFiles.open(index.path) }.contains("weight_map"))
        try FileManager.default.copyItem(atPath: TestFiles.fixture("reference.safetensors"), toPath: dir.appendingPathComponent("x.safetensors").path)
        try Data(#"{"weight_map": {"nope": "x.safetensors"}}"#.utf8).write(to: index)
        #expect(badFileMessage { _ = try WeightFiles.open(index.path) }.contains("has no such tensor"))

        // A folder whose only candidate is a link back to the folder.
        let loop = try TestFiles.scratch()
        try FileManager.default.createSymbolicLink(atPath: loop.appendingPathComponent("m.safetensors").path, withDestinationPath: loop.path)
        #expect(badFileMessage { _ = try WeightFiles.open(loop.path) }.contains("is a directory"))
        // A FIFO is refused without waiting for a writer.
        let fifo = loop.appendingPathComponent("pipe").path
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(badFileMessage { _ = try WeightFiles.open(fifo) }.contains("not a regular file"))
    }

    @Test func missingKeysNameTheKey() throws {
        let file = try WeightFiles.open(TestFiles.fixture("reference.safetensors"))
        #expect(badFileMessage { _ = try file.info("nope") }.contains("'nope'"))
        #expect(badFileMessage { _ = try file.tensor("nope", on: TestBackend()) }.contains("'nope'"))
    }
}
