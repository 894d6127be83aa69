import Foundation
import ReelCore
import ReelCPU
import ReelTestSupport
import Testing
@testable import ReelIO

@Suite struct TorchCheckpointTests {
    @Test(arguments: ["state_dict.pt", "dtypes.pt", "views.pt", "nested.pt", "big_endian.pt", "parameters.pt"])
    func matchesPyTorch(_ name: String) throws {
        try FixtureCheck.compare(TestFiles.fixture(name))
    }

    @Test func nestedCheckpointsAreScoped() throws {
        let file = try WeightFiles.open(TestFiles.fixture("nested.pt"))
        #expect(file is TorchCheckpoint)
        #expect(file.topLevelNames == ["generator", "generator_ema"])
        #expect(file.metadata["step"] == "1200")
        let ema = file.scoped(to: "generator_ema")
        #expect(ema.keys == ["model.blocks.0.self_attn.q.bias", "model.blocks.0.self_attn.q.weight", "model.head.head.weight"])
        #expect(try ema.info("model.head.head.weight") == TensorInfo(dtype: .bf16, shape: [2, 4]))
        let backend = CPUBackend(threads: 1)
        #expect(try ema.tensor("model.head.head.weight", on: backend).toFloats()
            == file.tensor("generator_ema.model.head.head.weight", on: backend).toFloats())
        #expect(badFileMessage { _ = try ema.tensor("generator_ema.model.head.head.weight", on: backend) }.contains("no tensor"))
        #expect(file.scoped(to: "model.").keys.isEmpty)
    }

    @Test func contiguousTensorsAreMapped() throws {
        let file = try WeightFiles.open(TestFiles.fixture("dtypes.pt"))
        let host = CPUBackend(threads: 1)
        #expect(try file.tensor("bf16", on: host).storage is MappedRegion)
        #expect(try file.tensor("f32", on: host).storage is MappedRegion)
        // f64 is converted; a strided view is gathered.
        #expect(!(try file.tensor("f64", on: host).storage is MappedRegion))
        let views = try WeightFiles.open(TestFiles.fixture("views.pt"))
        #expect(!(try views.tensor("transposed", on: host).storage is MappedRegion))
        #expect(try views.tensor("base", on: host).storage is MappedRegion)
        #expect(file.parameterCount == 6 + 6 + 5 + 3 + 4 + 3 + 3 + 3 + 3 + 4 + 1 + 0)
    }

    @Test func refusesCompressedEntries() throws {
        let message = badFileMessage { _ = try WeightFiles.open(TestFiles.fixture("deflated.pt")) }
        #expect(message.contains("compressed"))
    }

    // MARK: Hand-made archives

    static func open(_ pickle: [UInt8], storages: [String: [UInt8]] = [:], zip64: Bool = false) throws -> any WeightFile {
        try WeightFiles.open(TestFiles.write(ZipBuilder.checkpoint(pickle: pickle, storages: storages, zip64: zip64), name: "x.pt"))
    }

    static func message(_ pickle: [UInt8], storages: [String: [UInt8]] = [:]) -> String {
        badFileMessage { _ = try open(pickle, storages: storages) }
    }

    @Test func readsHandMadeArchivesIncludingZip64() throws {
        let pickle = PickleBuilder.stateDict([("a", "0", [2, 2]), ("b", "1", [3])])
        let storages = ["0": floatBytes([1, 2, 3, 4]), "1": floatBytes([5, 6, 7])]
        for zip64 in [false, true] {
            let file = try Self.open(pickle, storages: storages, zip64: zip64)
            #expect(file.keys == ["a", "b"])
            #expect(try file.tensor("a", on: TestBackend()).toFloats() == [1, 2, 3, 4])
            #expect(try file.tensor("b", on: CPUBackend(threads: 1)).toFloats() == [5, 6, 7])
        }
    }

    @Test func refusesCodeExecution() {
        // os.system("echo pwned") via GLOBAL + REDUCE, as a malicious checkpoint would do it.
        var p = PickleBuilder()
        p.global("os", "system"); p.string("echo pwned"); p.op(0x85); p.op(0x52); p.stop()
        let m = Self.message(p.bytes)
        #expect(m.contains("os.system") && m.contains("not allowed"), "\(m)")

        // The same through STACK_GLOBAL (protocol 4) and other modules.
        for (module, name) in [("posix", "system"), ("builtins", "eval"), ("subprocess", "Popen"), ("torch", "load"),
                               ("torch._utils", "_rebuild_device_tensor_from_numpy")] {
            var q = PickleBuilder()
            q.bytes = [0x80, 4]
            q.string(module); q.string(name); q.op(0x93); q.string("x"); q.op(0x85); q.op(0x52); q.stop()
            #expect(Self.message(q.bytes).contains("\(module).\(name)"))
        }

        // INST names its class too; NEWOBJ and sets are refused by opcode.
        var inst = PickleBuilder()
        inst.mark(); inst.op(0x69); inst.bytes += Array("os\nsystem\n".utf8); inst.stop()
        #expect(Self.message(inst.bytes).contains("os.system"))
        var newobj = PickleBuilder()
        newobj.global("collections", "OrderedDict"); newobj.op(0x29); newobj.op(0x81); newobj.stop()
        #expect(Self.message(newobj.bytes).contains("NEWOBJ"))
        // An allowed global may not be called with REDUCE unless it is a rebuild function.
        var storageCall = PickleBuilder()
        storageCall.global("torch", "FloatStorage"); storageCall.op(0x29); storageCall.op(0x52); storageCall.stop()
        #expect(Self.message(storageCall.bytes).contains("torch.FloatStorage"))
        // BUILD on anything but a dict (the usual __setstate__ attack) is refused.
        var build = PickleBuilder()
        build.string("x"); build.op(0x7D); build.op(0x62); build.stop()
        #expect(Self.message(build.bytes).contains("BUILD"))
        // Unsupported element types are named.
        var short = PickleBuilder()
        short.op(0x7D); short.string("s"); short.tensor(storage: "0", numel: 1, size: [1], stride: [1], storageType: "ShortStorage"); short.op(0x73); short.stop()
        #expect(Self.message(short.bytes, storages: ["0": [0, 0]]).contains("torch.ShortStorage"))
    }

    @Test func dtypeValuesBecomeMetadata() throws {
        var p = PickleBuilder()
        p.op(0x7D); p.mark()
        p.string("dtype"); p.global("torch", "bfloat16")
        p.string("w"); p.tensor(storage: "0", numel: 2, size: [2], stride: [1])
        p.op(0x75); p.stop()
        let file = try Self.open(p.bytes, storages: ["0": floatBytes([1, 2])])
        #expect(file.metadata == ["dtype": "torch.bfloat16"])
        #expect(file.keys == ["w"])
        var q = PickleBuilder()
        q.op(0x7D); q.string("f"); q.global("torch._utils", "_rebuild_tensor_v2"); q.op(0x73); q.stop()
        #expect(Self.message(q.bytes).contains("is the function"))
    }

    @Test func refusesMalformedPickles() {
        var memo = PickleBuilder()
        memo.op(0x68); memo.bytes.append(7); memo.stop()   // BINGET 7, never stored
        #expect(Self.message(memo.bytes).contains("memo reference 7"))

        var noStop = PickleBuilder()
        noStop.op(0x7D)
        #expect(Self.message(noStop.bytes).contains("truncated"))

        var longString = PickleBuilder()
        longString.op(0x58); longString.bytes.appendLE(UInt32.max); longString.stop()
        #expect(Self.message(longString.bytes).contains("runs past the end"))

        var underflow = PickleBuilder()
        underflow.op(0x73); underflow.stop()   // SETITEM on an empty stack
        #expect(Self.message(underflow.bytes).contains("underflow"))

        #expect(Self.message([0x80, 2, 0xFF]).contains("unknown opcode"))
        #expect(Self.message([0x80, 9, 0x2E]).contains("protocol 9"))
    }

    @Test func refusesDeepAndCyclicStructures() {
        // 100k nested MARKs.
        let marks = [0x80, 2] + [UInt8](repeating: 0x28, count: 100_000) + [0x2E]
        #expect(Self.message(marks).contains("nested MARKs"))

        // A list nested 100k deep (EMPTY_LIST x n, then APPEND x n-1): refused when flattened, freed flat.
        let n = 100_000
        let deep = [0x80, 2] + [UInt8](repeating: 0x5D, count: n) + [UInt8](repeating: 0x61, count: n - 1) + [0x2E]
        #expect(Self.message(deep).contains("nested more than"))

        // A tuple chain 100k deep (TUPLE1 x n).
        let tuples = [0x80, 2, 0x4E] + [UInt8](repeating: 0x85, count: n) + [0x2E]
        #expect(Self.message(tuples).contains("nested more than"))

        // A list that contains itself.
        let cycle: [UInt8] = [0x80, 2, 0x5D, 0x32, 0x61, 0x2E]  // EMPTY_LIST DUP APPEND STOP
        #expect(Self.message(cycle).contains("nested more than"))

        // Memo and stack growth stop at their limits (small ones here, to keep the test fast).
        var memo: [UInt8] = [0x80, 2, 0x4E]
        for i in 0..<1001 { memo.append(0x72); memo.appendLE(UInt32(i)) }
        memo.append(0x2E)
        #expect(Self.unpickle(memo, Unpickler.Limits(memo: 1000)).contains("memo entries"))
        let dups = [0x80, 2, 0x4E] + [UInt8](repeating: 0x32, count: 1000) + [0x2E]
        #expect(Self.unpickle(dups, Unpickler.Limits(stack: 1000)).contains("values on the pickle stack"))
        #expect(Self.unpickle(dups, Unpickler.Limits()) == "")
    }

    /// The error of running `bytes` on the unpickler with `limits`, or "" when it succeeds.
    static func unpickle(_ bytes: [UInt8], _ limits: Unpickler.Limits) -> String {
        bytes.withUnsafeBytes { raw in
            var u = Unpickler(raw, limits: limits)
            defer { u.release() }
            do { _ = try u.run(); return "" } catch { return "\(error)" }
        }
    }

    @Test func refusesTensorsOutsideTheirStorage() throws {
        var p = PickleBuilder()
        p.op(0x7D); p.string("w"); p.tensor(storage: "0", numel: 4, offset: 2, size: [2, 2], stride: [2, 1]); p.op(0x73); p.stop()
        #expect(Self.message(p.bytes, storages: ["0": floatBytes([1, 2, 3, 4])]).contains("reaches past its storage"))

        // The pickle promises 4 floats, the archive holds 2.
        let ok = PickleBuilder.stateDict([("w", "0", [4])])
        #expect(Self.message(ok, storages: ["0": floatBytes([1, 2])]).contains("holds 8 bytes"))
        #expect(Self.message(ok, storages: [:]).contains("no archive/data/0"))

        // A stride-0 view of one float that would be 2^59 elements: opens, refuses to materialize.
        var expanded = PickleBuilder()
        expanded.op(0x7D); expanded.string("w"); expanded.tensor(storage: "0", numel: 1, size: [1 << 30, 1 << 29], stride: [0, 0]); expanded.op(0x73); expanded.stop()
        let file = try Self.open(expanded.bytes, storages: ["0": floatBytes([1])])
        #expect(try file.info("w").shape == [1 << 30, 1 << 29])
        #expect(badFileMessage { _ = try file.tensor("w", on: CPUBackend(threads: 1)) }.contains("more than this machine's"))
        #expect(badFileMessage { _ = try file.tensor("w", on: TestBackend(), as: .bf16) }.contains("more than this machine's"))
        // One whose element count does not fit 64 bits at all is refused when opened.
        var overflow = PickleBuilder()
        overflow.op(0x7D); overflow.string("w"); overflow.tensor(storage: "0", numel: 1, size: [1 << 31, 1 << 31, 4], stride: [0, 0, 0]); overflow.op(0x73); overflow.stop()
        #expect(Self.message(overflow.bytes, storages: ["0": floatBytes([1])]).contains("too large"))

        var huge = PickleBuilder()
        huge.op(0x7D); huge.string("w"); huge.tensor(storage: "0", numel: 4, size: [1 << 31 - 1, 1 << 31 - 1, 1 << 31 - 1], stride: [1, 1, 1]); huge.op(0x73); huge.stop()
        #expect(!Self.message(huge.bytes, storages: ["0": floatBytes([1, 2, 3, 4])]).isEmpty)
    }

    @Test func refusesBrokenArchives() throws {
        let whole = ZipBuilder.checkpoint(pickle: PickleBuilder.stateDict([("w", "0", [2])]), storages: ["0": floatBytes([1, 2])])
        // Every prefix (a truncated download) fails cleanly.
        for n in 0..<whole.count {
            let path = try TestFiles.write(Array(whole[..<n]), name: "cut.pt")
            #expect(!badFileMessage { _ = try WeightFiles.open(path) }.isEmpty, "prefix \(n)")
        }
        // Central directory cut short: the end record points past where the directory now ends.
        let eocd = whole.count - 22
        let dirOffset = Int(whole[eocd + 16]) | Int(whole[eocd + 17]) << 8
        var cutDirectory = Array(whole[..<(dirOffset + 20)]) + Array(whole[eocd...])
        #expect(badFileMessage { _ = try WeightFiles.open(TestFiles.write(cutDirectory, name: "d.pt")) }.contains("central directory"))
        // A corrupted directory entry signature.
        cutDirectory = whole
        cutDirectory[dirOffset] = 0
        #expect(badFileMessage { _ = try WeightFiles.open(TestFiles.write(cutDirectory, name: "e.pt")) }.contains("entry 0"))
        // A bare pickle (legacy torch.save) is named as such.
        #expect(badFileMessage { _ = try WeightFiles.open(TestFiles.write([0x80, 2, 0x8A, 0x0A], name: "old.pt")) }.contains("legacy"))
        // A flipped bit inside data.pkl fails its CRC-32.
        let pkl = PickleBuilder.stateDict([("w", "0", [2])])
        var flipped = whole
        let at = try #require((0..<(whole.count - pkl.count)).first { Array(whole[$0..<($0 + pkl.count)]) == pkl })
        flipped[at + pkl.count / 2] ^= 0x10
        #expect(badFileMessage { _ = try WeightFiles.open(TestFiles.write(flipped, name: "f.pt")) }.contains("CRC-32"))
        // TorchScript archives are named as such.
        var script = ZipBuilder()
        script.add("m/data.pkl", PickleBuilder.stateDict([]))
        script.add("m/constants.pkl", [0x80, 2, 0x29, 0x2E])
        #expect(badFileMessage { _ = try WeightFiles.open(TestFiles.write(script.build(), name: "s.pt")) }.contains("TorchScript"))
        // A zip that is not a checkpoint.
        var other = ZipBuilder()
        other.add("readme.txt", Array("hi".utf8))
        #expect(badFileMessage { _ = try WeightFiles.open(TestFiles.write(other.build(), name: "o.pt")) }.contains("data.pkl"))
    }

    /// Corrupting any single byte of a real checkpoint gives a clean error or a loadable file.
    @Test func survivesCorruptedBytes() throws {
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: TestFiles.fixture("nested.pt"))))
        let backend = TestBackend()
        let dir = try TestFiles.scratch()
        for (i, position) in stride(from: 0, to: original.count, by: 7).enumerated() {
            var bytes = original
            bytes[position] ^= [0xFF, 0x01, 0x80][i % 3]
            let path = dir.appendingPathComponent("c.pt").path
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let file = try WeightFiles.open(path)
                for key in file.keys { _ = try file.tensor(key, on: backend) }
            } catch let error as ReelError {
                guard case .badFile = error else { Issue.record("\(error)"); continue }
            }
        }
    }
}
