import Foundation
import ReelCore

/// The NVIDIA libraries, each loaded once on first use. Nothing is loaded until CUDA is asked for,
/// so the binary runs on machines without them; asking gives an error that says what is missing.
public enum CUDALibraries {
    private static let driverResult: Result<CUDADriver, ReelError> = load {
        let lib = try LibrarySearch().open("libcuda (the NVIDIA driver)", names: ["libcuda.so.1", "libcuda.so"])
        let driver = try CUDADriver(library: lib)
        try driver.check(driver.cuInit(0), "cuInit")
        return driver
    }
    private static let nvrtcResult: Result<NVRTC, ReelError> = load {
        try NVRTC(library: LibrarySearch().open("NVRTC (CUDA run-time compiler)",
                                                names: ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]))
    }
    private static let cublasLtResult: Result<CuBLASLt, ReelError> = load {
        try CuBLASLt(library: LibrarySearch().open("cuBLASLt", names: ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"]))
    }

    private static let cudnnResult: Result<CuDNN, ReelError> = load {
        try CuDNN(library: LibrarySearch().open("cuDNN", names: ["libcudnn.so.9", "libcudnn.so"]))
    }

    private static let ncclResult: Result<NCCL, ReelError> = load {
        try NCCL(library: LibrarySearch().open("NCCL (collectives between GPUs)", names: ["libnccl.so.2", "libnccl.so"]))
    }

    private static func load<T>(_ body: () throws -> T) -> Result<T, ReelError> {
        do { return .success(try body()) } catch let e as ReelError { return .failure(e) } catch {
            return .failure(.library(name: "CUDA", message: "\(error)"))
        }
    }

    /// The driver API, initialized (`cuInit`).
    public static func driver() throws -> CUDADriver { try driverResult.get() }
    public static func nvrtc() throws -> NVRTC { try nvrtcResult.get() }
    public static func cublasLt() throws -> CuBLASLt { try cublasLtResult.get() }
    /// Optional: used for the fused attention fast path when present.
    public static func cudnn() throws -> CuDNN { try cudnnResult.get() }
    /// Needed only to spread work over several GPUs (`NCCLCommunicator`).
    public static func nccl() throws -> NCCL { try ncclResult.get() }
}

/// One GPU as `reel devices` reports it.
public struct CUDADeviceInfo: Sendable {
    public var ordinal: Int
    public var name: String
    public var totalMemory: Int
    public var computeCapability: (major: Int, minor: Int)
    public var multiprocessors: Int

    /// "sm_90" for compute capability 9.0.
    public var arch: String { "sm_\(computeCapability.major)\(computeCapability.minor)" }
}

/// What `reel devices` prints: the GPUs, or why there are none, and the library versions found.
public struct CUDAInventory: Sendable {
    public var devices: [CUDADeviceInfo] = []
    /// Library name -> "version at path", or the error that explains its absence.
    public var libraries: [(name: String, status: String, found: Bool)] = []
    /// Why no device is usable, when `devices` is empty.
    public var problem: String?

    public static func discover() -> CUDAInventory {
        var inv = CUDAInventory()
        do {
            let d = try CUDALibraries.driver()
            inv.libraries.append(("CUDA driver", "\(d.versionString()) (\(d.library.path))", true))
            var count: Int32 = 0
            try d.check(d.cuDeviceGetCount(&count), "cuDeviceGetCount")
            for i in 0..<Int(count) { inv.devices.append(try deviceInfo(d, ordinal: i)) }
            if count == 0 { inv.problem = "the NVIDIA driver is installed but reports no GPU" }
        } catch {
            inv.libraries.append(("CUDA driver", "\(error)", false))
            inv.problem = "\(error)"
        }
        do {
            let n = try CUDALibraries.nvrtc()
            inv.libraries.append(("NVRTC", "\(n.versionString) (\(n.library.path))", true))
        } catch { inv.libraries.append(("NVRTC", "\(error)", false)) }
        do {
            let c = try CUDALibraries.cublasLt()
            inv.libraries.append(("cuBLASLt", "\(c.versionString) (\(c.library.path))", true))
        } catch { inv.libraries.append(("cuBLASLt", "\(error)", false)) }
        do {
            let c = try CUDALibraries.cudnn()
            inv.libraries.append(("cuDNN", "\(c.versionString) (\(c.library.path))", true))
        } catch { inv.libraries.append(("cuDNN", "\(error) (optional: attention then uses Reel's own kernel)", false)) }
        do {
            let n = try CUDALibraries.nccl()
            inv.libraries.append(("NCCL", "\(n.versionString) (\(n.library.path))", true))
        } catch { inv.libraries.append(("NCCL", "\(error) (optional: needed only to spread the DiT over several GPUs)", false)) }
        return inv
    }

    static func deviceInfo(_ d: CUDADriver, ordinal: Int) throws -> CUDADeviceInfo {
        var dev: CUdevice = 0
        try d.check(d.cuDeviceGet(&dev, Int32(ordinal)), "cuDeviceGet(\(ordinal))")
        var nameBuf = [CChar](repeating: 0, count: 256)
        try d.check(d.cuDeviceGetName(&nameBuf, 255, dev), "cuDeviceGetName")
        var mem = 0
        try d.check(d.cuDeviceTotalMem(&mem, dev), "cuDeviceTotalMem_v2")
        func attr(_ a: Int32) throws -> Int {
            var v: Int32 = 0
            try d.check(d.cuDeviceGetAttribute(&v, a, dev), "cuDeviceGetAttribute(\(a))")
            return Int(v)
        }
        return CUDADeviceInfo(ordinal: ordinal, name: String(decoding: nameBuf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), totalMemory: mem,
                              computeCapability: (try attr(CUDADriver.attrComputeCapabilityMajor),
                                                  try attr(CUDADriver.attrComputeCapabilityMinor)),
                              multiprocessors: try attr(CUDADriver.attrMultiprocessorCount))
    }
}
