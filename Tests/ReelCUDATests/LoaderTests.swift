import Foundation
import Testing
@testable import ReelCore
@testable import ReelCUDA

@Suite struct LibrarySearchTests {
    func tempDir(_ name: String) throws -> String {
        let d = NSTemporaryDirectory() + "reel-cuda-tests-\(getpid())/" + name
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func overrideComesFirstThenLDLibraryPath() throws {
        let a = try tempDir("override"), b = try tempDir("ldpath")
        try FileManager.default.createDirectory(atPath: a + "/lib64", withIntermediateDirectories: true)
        let dirs = LibrarySearch(environment: ["REEL_CUDA_PATH": a, "LD_LIBRARY_PATH": b + ":/does/not/exist"]).directories()
        #expect(Array(dirs.prefix(3)) == [a, a + "/lib64", b])
        #expect(!dirs.contains("/does/not/exist"))
    }

    @Test func pipWheelFoldersAreSearched() throws {
        let site = try tempDir("venv/lib/python3.12/site-packages")
        try FileManager.default.createDirectory(atPath: site + "/nvidia/cu13/lib", withIntermediateDirectories: true)
        let venv = (site as NSString).deletingLastPathComponent.replacingOccurrences(of: "/lib/python3.12", with: "")
        let dirs = LibrarySearch(environment: ["VIRTUAL_ENV": venv]).directories()
        #expect(dirs.contains(site + "/nvidia/cu13/lib"))
    }

    @Test func missingLibraryIsATypedErrorNamingWhatToSet() throws {
        let search = LibrarySearch(environment: ["REEL_CUDA_PATH": try tempDir("empty")])
        do {
            _ = try search.open("libnothing", names: ["libreel-does-not-exist.so.1"])
            Issue.record("opened a library that does not exist")
        } catch let ReelError.library(name, message) {
            #expect(name == "libnothing")
            #expect(message.contains("REEL_CUDA_PATH"))
            #expect(message.contains("libreel-does-not-exist.so.1"))
        }
    }

    @Test func aFileThatIsNotALibraryReportsTheLoaderError() throws {
        let d = try tempDir("bogus")
        FileManager.default.createFile(atPath: d + "/libcuda.so.1", contents: Data("not an ELF".utf8))
        do {
            _ = try LibrarySearch(environment: ["REEL_CUDA_PATH": d]).open("libcuda", names: ["libcuda.so.1"])
        } catch let ReelError.library(_, message) {
            // Either the real driver was found by the system loader afterwards, or the error names the bad file.
            #expect(message.contains(d + "/libcuda.so.1"))
        }
    }

    @Test func noDriverMeansAClearErrorNotACrash() throws {
        // On a machine without libcuda (CI), opening a device throws; with a GPU it succeeds.
        if let driver = try? CUDALibraries.driver() {
            #expect(!driver.versionString().isEmpty)
        } else {
            #expect(throws: ReelError.self) { _ = try CUDABackend(device: 0) }
            let inv = CUDAInventory.discover()
            #expect(inv.devices.isEmpty)
            #expect(inv.problem?.contains("libcuda") == true)
        }
    }
}

@Suite struct KernelCacheTests {
    let base = KernelCacheKey(name: "norm", source: "A", headers: [("common.cuh", "H")], options: ["-x"], arch: "sm_90", compilerVersion: "13.0")

    @Test func keyChangesWithEveryInput() {
        let variants = [
            KernelCacheKey(name: "norm", source: "B", headers: [("common.cuh", "H")], options: ["-x"], arch: "sm_90", compilerVersion: "13.0"),
            KernelCacheKey(name: "norm", source: "A", headers: [("common.cuh", "H2")], options: ["-x"], arch: "sm_90", compilerVersion: "13.0"),
            KernelCacheKey(name: "norm", source: "A", headers: [("common.cuh", "H")], options: ["-y"], arch: "sm_90", compilerVersion: "13.0"),
            KernelCacheKey(name: "norm", source: "A", headers: [("common.cuh", "H")], options: ["-x"], arch: "sm_89", compilerVersion: "13.0"),
            KernelCacheKey(name: "norm", source: "A", headers: [("common.cuh", "H")], options: ["-x"], arch: "sm_90", compilerVersion: "12.8"),
        ]
        for v in variants {
            #expect(v.fileName != base.fileName)
        }
        #expect(base.fileName.hasPrefix("norm-sm_90-nvrtc13.0-"))
    }

    @Test func hashIsStableAndSeparatesParts() {
        #expect(SourceHash.hex(["abc"]) == SourceHash.hex(["abc"]))
        #expect(SourceHash.hex(["ab", "c"]) != SourceHash.hex(["a", "bc"]))
        #expect(SourceHash.hex(["abc"]).count == 32)
    }

    @Test func diskCacheRoundTrip() throws {
        let dir = NSTemporaryDirectory() + "reel-kcache-\(getpid())"
        let cache = KernelDiskCache(directory: dir)
        #expect(cache.load(base) == nil)
        cache.store(base, [1, 2, 3])
        #expect(cache.load(base) == [1, 2, 3])
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test func sourcesAreFoundAndMissingSourcesAreAnError() throws {
        let sources = try KernelSources.locate(environment: [:])
        for file in ["common.cuh", "elementwise.cu", "norm.cu", "softmax.cu", "rope.cu", "layout.cu", "conv.cu", "random.cu", "attention.cu", "attention_sm90.cu", "fused.cu", "int8.cu"] {
            #expect(!(try sources.source(file)).isEmpty)
        }
        #expect(throws: ReelError.self) { _ = try sources.source("nope.cu") }
    }

    /// Every kernel file compiles for Hopper with the NVRTC found here (skipped where none is installed).
    @Test func kernelsCompileWithNVRTC() throws {
        guard let nvrtc = try? CUDALibraries.nvrtc() else { return }
        let sources = try KernelSources.locate(environment: [:])
        let files = try FileManager.default.contentsOfDirectory(atPath: sources.directory).filter { $0.hasSuffix(".cu") }.sorted()
        #expect(files.count >= 8)
        for f in files {
            let arch = try KernelCompiler.arch(file: String(f.dropLast(3)), device: "sm_90")
            let cubin = try nvrtc.compile(source: try sources.source(f), name: f, headers: try sources.headers(),
                                          options: KernelCompiler.options(arch: arch))
            #expect(cubin.count > 1000, "\(f)")
            #expect(Array(cubin.prefix(4)) == [0x7F, 0x45, 0x4C, 0x46], "\(f) is not an ELF cubin")
        }
    }

    /// Files named `*_sm90` (wgmma, TMA) compile for sm_90a on a Hopper GPU and are refused on any other; the rest
    /// compile for the device's own architecture.
    @Test func hopperFilesCompileForSM90aOnHopperOnly() throws {
        #expect(try KernelCompiler.arch(file: "attention_sm90", device: "sm_90") == "sm_90a")
        #expect(try KernelCompiler.arch(file: "attention", device: "sm_90") == "sm_90")
        #expect(try KernelCompiler.arch(file: "attention", device: "sm_89") == "sm_89")
        for device in ["sm_89", "sm_100", "sm_80"] {
            do {
                _ = try KernelCompiler.arch(file: "attention_sm90", device: device)
                Issue.record("attention_sm90 compiled for \(device)")
            } catch {
                #expect("\(error)".contains("Hopper") && "\(error)".contains(device), "\(error)")
            }
        }
    }

    @Test func compileErrorsCarryTheLog() throws {
        guard let nvrtc = try? CUDALibraries.nvrtc() else { return }
        do {
            _ = try nvrtc.compile(source: "extern \"C\" __global__ void k() { undefined_thing(); }", name: "bad.cu", headers: [], options: ["--gpu-architecture=sm_90"])
            Issue.record("bad source compiled")
        } catch let ReelError.library(name, message) {
            #expect(name == "NVRTC")
            #expect(message.contains("undefined_thing"))
        }
    }
}

@Suite struct RuntimeHelperTests {
    @Test func blockSizesBinRepeatedShapes() {
        #expect(CUDAAllocator.blockSize(for: 1) == 512)
        #expect(CUDAAllocator.blockSize(for: 513) == 1024)
        #expect(CUDAAllocator.blockSize(for: 3 << 20) == 3 << 20)
        // A 1536 x 1536 bf16 weight takes 4.5 MiB from a slab, not a 6 MiB driver block.
        #expect(CUDAAllocator.blockSize(for: 1536 * 1536 * 2) == 4608 << 10)
        #expect(CUDAAllocator.blockSize(for: (16 << 20) + 1) == 18 << 20)
        #expect(CUDAAllocator.blockSize(for: 4680 * 1536 * 2) == CUDAAllocator.blockSize(for: 4680 * 1536 * 2 - 100))
    }

    func strides(_ b: BcastArg, _ operand: Int) -> [Int64] {
        withUnsafeBytes(of: b.stride) { p in (0..<Int(b.rank)).map { p.load(fromByteOffset: (operand * BcastArg.maxRank + $0) * 8, as: Int64.self) } }
    }
    func dims(_ b: BcastArg) -> [Int64] {
        withUnsafeBytes(of: b.dims) { p in (0..<Int(b.rank)).map { p.load(fromByteOffset: $0 * 8, as: Int64.self) } }
    }

    @Test func broadcastMergesContiguousAxes() throws {
        #expect(try BcastArg.make(out: [2, 3, 4], operands: [[2, 3, 4], [2, 3, 4]], op: "t").rank == 0)
        // [B, L, C] by [1, 1, C]: L and B merge, C stays.
        let b = try BcastArg.make(out: [2, 50, 64], operands: [[2, 50, 64], [1, 1, 64]], op: "t")
        #expect(dims(b) == [100, 64])
        #expect(strides(b, 0) == [64, 1])
        #expect(strides(b, 1) == [0, 1])
        // [2, 5, 7] by [5, 1]
        let c = try BcastArg.make(out: [2, 5, 7], operands: [[2, 5, 7], [5, 1]], op: "t")
        #expect(dims(c) == [2, 5, 7])
        #expect(strides(c, 1) == [0, 1, 0])
    }

    @Test func dtypeCodesMatchTheKernels() {
        #expect(DType.f32.kernelCode == 0 && DType.f16.kernelCode == 1 && DType.bf16.kernelCode == 2)
        #expect(DType.int32.kernelCode == 3 && DType.int64.kernelCode == 4 && DType.fp8e4m3.kernelCode == 7)
    }
}
