import Foundation
import ReelCore

/// One GPU: its primary context, caching allocator, pinned staging, compiled kernels and cuBLASLt
/// handle. Shared by every stream (`CUDABackend`) on the device.
public final class CUDADevice: @unchecked Sendable {
    public let info: CUDADeviceInfo
    let driver: CUDADriver
    let context: CUhandle
    let allocator: CUDAAllocator
    let staging: PinnedStaging
    /// GPU time per op and memory at the peak, recorded when `REEL_PROFILE` is set (see `CUDAProfiler`).
    public let profiler: CUDAProfiler
    /// GEMM descriptors and cuDNN plans, made once per shape for every stream of this device.
    let plans = CUDAPlanCache()
    /// Zero-padded copies of narrow convolution filters (`CUDABackend.narrowConvOutputChannels`).
    let narrowFilters = NarrowFilterCache()
    private let lock = NSLock()
    private var functions: [String: CUhandle] = [:]
    private var modules: [String: CUhandle] = [:]
    private var sources: KernelSources?
    private let diskCache = KernelDiskCache()
    private var blasHandle: CUhandle = nil
    private var gemmAlgorithms: [GemmKey: [UInt8]] = [:]
    /// Compiles that missed the disk cache, for `reel check-ops`' report.
    public private(set) var kernelCompiles = 0

    nonisolated(unsafe) private static var opened: [Int: CUDADevice] = [:]
    private static let openLock = NSLock()

    /// The device with this ordinal, opened once per process.
    public static func open(_ ordinal: Int = 0) throws -> CUDADevice {
        openLock.lock()
        defer { openLock.unlock() }
        if let d = opened[ordinal] { return d }
        let driver = try CUDALibraries.driver()
        var count: Int32 = 0
        try driver.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        guard ordinal >= 0 && ordinal < Int(count) else {
            throw ReelError.input("cuda:\(ordinal) does not exist: \(count) GPU(s) visible (see `reel devices`)")
        }
        let d = try CUDADevice(driver: driver, ordinal: ordinal)
        opened[ordinal] = d
        return d
    }

    private init(driver: CUDADriver, ordinal: Int) throws {
        self.driver = driver
        info = try CUDAInventory.deviceInfo(driver, ordinal: ordinal)
        var dev: CUdevice = 0
        try driver.check(driver.cuDeviceGet(&dev, Int32(ordinal)), "cuDeviceGet")
        var ctx: CUhandle = nil
        try driver.check(driver.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain")
        context = ctx
        allocator = CUDAAllocator(driver: driver, device: "cuda:\(ordinal)")
        staging = PinnedStaging(driver: driver)
        profiler = CUDAProfiler(driver: driver, context: ctx, allocator: allocator)
        try makeCurrent()
    }

    /// Binds the context to the calling thread (Swift tasks may move between threads).
    @inline(__always)
    func makeCurrent() throws {
        try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
    }

    /// Free and total device memory in bytes.
    public func memoryInfo() throws -> (free: Int, total: Int) {
        try makeCurrent()
        var f = 0, t = 0
        try driver.check(driver.cuMemGetInfo(&f, &t), "cuMemGetInfo_v2")
        return (f, t)
    }

    /// Caps the device memory Reel holds on this GPU at `bytes` (`--gpu-memory`; nil: no cap). An allocation
    /// that would pass it throws `ReelError.overMemoryCap` after the allocator has given its cached blocks back.
    public func setMemoryCap(_ bytes: Int?) { allocator.cap = bytes }

    /// The cap set by `setMemoryCap`.
    public var memoryCap: Int? { allocator.cap }

    /// Bytes held by live tensors, the most ever held, and how many times cuMemAlloc was called.
    public var allocatorStats: (live: Int, peak: Int, cached: Int, driverAllocations: Int) {
        (allocator.liveBytes, allocator.peakBytes, allocator.cachedBytes, allocator.driverAllocations)
    }

    // MARK: Kernels

    /// The kernel `name` of `Kernels/<file>.cu`, compiled for this GPU on first use (or read from the
    /// disk cache). `sharedBytes` above 48 KiB raises the kernel's dynamic shared-memory limit.
    func function(_ file: String, _ name: String) throws -> CUhandle {
        let key = file + "/" + name
        lock.lock()
        defer { lock.unlock() }
        if let f = functions[key] { return f }
        let module = try loadModule(file)
        var fn: CUhandle = nil
        try driver.check(driver.cuModuleGetFunction(&fn, module, name), "cuModuleGetFunction(\(key))")
        functions[key] = fn
        return fn
    }

    private func loadModule(_ file: String) throws -> CUhandle {
        if let m = modules[file] { return m }
        if sources == nil { sources = try KernelSources.locate() }
        let src = try sources!.source(file + ".cu")
        let headers = try sources!.headers()
        let nvrtc = try CUDALibraries.nvrtc()
        let arch = try KernelCompiler.arch(file: file, device: info.arch)
        let options = KernelCompiler.options(arch: arch)
        let key = KernelCacheKey(name: file, source: src, headers: headers, options: options, arch: arch,
                                 compilerVersion: nvrtc.versionString)
        var cubin = diskCache.load(key)
        if cubin == nil {
            cubin = try nvrtc.compile(source: src, name: file + ".cu", headers: headers, options: options)
            kernelCompiles += 1
            diskCache.store(key, cubin!)
        }
        var module: CUhandle = nil
        try makeCurrent()
        let status = cubin!.withUnsafeBytes { driver.cuModuleLoadData(&module, $0.baseAddress!) }
        try driver.check(status, "cuModuleLoadData(\(file).cu for \(arch))")
        modules[file] = module
        return module
    }

    // MARK: cuBLASLt

    /// The cuBLASLt handle, created on first use.
    func blas() throws -> (CuBLASLt, CUhandle) {
        let lt = try CUDALibraries.cublasLt()
        lock.lock()
        defer { lock.unlock() }
        if blasHandle == nil {
            try makeCurrent()
            try lt.check(lt.cublasLtCreate(&blasHandle), "cublasLtCreate")
        }
        return (lt, blasHandle)
    }

    /// The heuristic's choice for a problem (64 bytes of cublasLtMatmulAlgo_t), computed once.
    func gemmAlgorithm(_ key: GemmKey, choose: () throws -> [UInt8]) throws -> [UInt8] {
        lock.lock()
        if let a = gemmAlgorithms[key] { lock.unlock(); return a }
        lock.unlock()
        let a = try choose()
        lock.lock(); gemmAlgorithms[key] = a; lock.unlock()
        return a
    }
}

/// How every kernel file is compiled.
public enum KernelCompiler {
    /// NVRTC options: a real architecture gives a CUBIN (no driver JIT at load); fp32 math stays IEEE
    /// (no fast-math), since the CPU backend is the oracle.
    public static func options(arch: String) -> [String] {
        ["--gpu-architecture=\(arch)", "--std=c++17", "-default-device", "--extra-device-vectorization", "-lineinfo"]
    }

    /// The architecture `file` is compiled for on a device of `device` ("sm_90"): the device's own, except files
    /// named `*_sm90`, which use Hopper's arch-specific instructions (wgmma, setmaxnreg) and compile for `sm_90a`
    /// only, on a Hopper GPU (that code runs on no other).
    public static func arch(file: String, device: String) throws -> String {
        guard file.hasSuffix("_sm90") else { return device }
        guard device == "sm_90" else {
            throw ReelError.unsupported(backend: "cuda", op: file, message: "needs a Hopper GPU (sm_90: H100, H200, GH200); this one is \(device)")
        }
        return "sm_90a"
    }
}

/// A device's plan caches, shared by its streams. `gemmLock` guards the GEMM plans (held until a GEMM is
/// enqueued: a plan's bias pointer is set per call); `cudnnLock` guards the rest (held until a cuDNN
/// execution is enqueued: the one handle is bound to the calling stream first).
final class CUDAPlanCache: @unchecked Sendable {
    let gemmLock = NSLock()
    var gemmPlans: [GemmKey: GemmPlan] = [:]
    let cudnnLock = NSLock()
    var cudnnHandle: CUhandle = nil
    /// The stream the handle is bound to now.
    var cudnnStream: CUhandle = nil
    var cudnnPlans: [CuDNNAttentionPlan.Key: CuDNNAttentionPlan] = [:]
    var cudnnRefused: Set<CuDNNAttentionPlan.Key> = []
    var cudnnConvPlans: [CuDNNConvPlan.Key: CuDNNConvPlan] = [:]
    var cudnnConvRefused: Set<CuDNNConvPlan.Key> = []
    /// Shapes cuDNN refused, with its reason.
    var cudnnRefusals: [String] = []
    let scheduleLock = NSLock()
    /// The Hopper attention kernel's schedules by shape (`CUDABackend.hopperSchedule`).
    var hopperSchedules: [HopperScheduleKey: HopperAttentionSchedule] = [:]
}

struct HopperScheduleKey: Hashable {
    let lq: Int, lk: Int, heads: Int
}

/// Narrow convolution filters and biases padded with zeros, one copy per tensor while it lives (a weak
/// reference: an entry whose tensor is gone is dropped, and a new tensor at the same address never matches it).
/// Weights and biases are kept apart: one weight serves calls with and without its bias.
final class NarrowFilterCache: @unchecked Sendable {
    private struct Entry {
        weak var source: Tensor?
        let padded: Tensor
    }
    private let lock = NSLock()
    private var entries: [ObjectIdentifier: Entry] = [:]

    /// `tensor` padded with zeros along axis 0 to `count` rows, made on first use on `tensor`'s backend, whose
    /// stream is then synchronized once so that every stream may read the copy.
    func padded(_ tensor: Tensor, to count: Int) throws -> Tensor {
        lock.lock()
        defer { lock.unlock() }
        let id = ObjectIdentifier(tensor)
        if let e = entries[id], e.source === tensor, e.padded.shape[0] == count { return e.padded }
        entries = entries.filter { $0.value.source != nil }
        let b = tensor.backend
        let zeros = try b.zeros(tensor.shape.replacing(axis: 0, with: count - tensor.shape[0]), dtype: tensor.dtype)
        let padded = try b.concat([tensor, zeros], axis: 0)
        try b.synchronize()
        entries[id] = Entry(source: tensor, padded: padded)
        return padded
    }
}

extension CUDADevice: Device {
    public var name: String { "cuda:\(info.ordinal)" }
    public func makeStream() throws -> any Backend { try CUDABackend(device: self) }
    public func memoryStatistics() -> MemoryStatistics? {
        MemoryStatistics(inUse: allocator.liveBytes, peak: allocator.peakBytes,
                         reserved: allocator.liveBytes + allocator.cachedBytes + allocator.slabSpareBytes)
    }
    /// The same GPU; another GPU's memory is read through copies (`CUDABackend.copy(fromOtherDevice:)`).
    public func canRead(from other: any Device) -> Bool { other === self }
}
