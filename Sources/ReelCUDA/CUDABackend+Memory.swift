import ReelCore

extension CUDABackend: MemoryReporting {
    /// The caching allocator's figures: live blocks, their peak, and live plus cached plus unused slab
    /// space (what the device has given Reel). Block sizes are rounded as the allocator rounds them.
    public func memoryStatistics() -> MemoryStatistics {
        let a = cudaDevice.allocator
        return MemoryStatistics(inUse: a.liveBytes, peak: a.peakBytes, reserved: a.liveBytes + a.cachedBytes + a.slabSpareBytes)
    }

    public func resetPeakMemory() { cudaDevice.allocator.resetPeak() }
}

extension CUDABackend: DeviceCopying {
    /// `tensor` copied into this GPU's memory on this stream: from another GPU with one peer copy (the driver
    /// stages it through host memory where peer access is off), from host memory by an upload. The caller
    /// orders the copy after the tensor's producer (`wait(for:)` an event of its stream) and keeps `tensor`
    /// alive until this stream has run the copy.
    public func copy(fromOtherDevice tensor: Tensor) throws -> Tensor {
        guard let source = tensor.backend as? CUDABackend else {
            let bytes = try tensor.backend.downloadBytes(tensor)
            return try bytes.withUnsafeBytes { try upload($0, shape: tensor.shape, dtype: tensor.dtype) }
        }
        let out = try allocate(tensor.shape, dtype: tensor.dtype)
        guard tensor.byteCount > 0 else { return out }
        let src = try source.pointer(tensor, "copy(fromOtherDevice:)")
        let dst = try pointer(out, "copy(fromOtherDevice:)")
        try cudaDevice.makeCurrent()
        try driver.check(driver.cuMemcpyPeerAsync(dst, cudaDevice.context, src, source.cudaDevice.context, tensor.byteCount, stream),
                         "cuMemcpyPeerAsync")
        return out
    }
}

/// Page-locked host memory (cuMemAllocHost): the GPU's copy engines read it by DMA at the link's rate, and a
/// copy from it is asynchronous. Streamed DiT blocks live here (`HostToDeviceCopying`).
public final class PinnedHostStorage: HostStorage, @unchecked Sendable {
    public let baseAddress: UnsafeMutableRawPointer
    public let byteCount: Int
    private let driver: CUDADriver
    /// The context it was allocated in: made current again to free it, since the last owner may let go of it on
    /// any thread (a stage thread, the main thread after an error), where no context is current.
    private let device: CUDADevice

    init(byteCount: Int, device: CUDADevice, driver: CUDADriver) throws {
        var p: UnsafeMutableRawPointer?
        let status = driver.cuMemAllocHost(&p, max(byteCount, 1))
        if status == 2 { throw ReelError.outOfMemory(backend: "cuda (page-locked host memory)", bytes: byteCount) }
        try driver.check(status, "cuMemAllocHost_v2(\(byteCount))")
        baseAddress = p!
        self.byteCount = byteCount
        self.driver = driver
        self.device = device
    }

    deinit {
        try? device.makeCurrent()
        _ = driver.cuMemFreeHost(baseAddress)
    }
}

extension CUDABackend: HostToDeviceCopying {
    public func makeHostBuffer(bytes: Int) throws -> any HostStorage {
        try cudaDevice.makeCurrent()
        return try PinnedHostStorage(byteCount: bytes, device: cudaDevice, driver: driver)
    }

    /// One cuMemcpyHtoDAsync on this stream: from page-locked memory the host does not wait.
    public func copy(fromHost source: UnsafeRawPointer, into tensor: Tensor) throws {
        guard tensor.byteCount > 0 else { return }
        let dst = try pointer(tensor, "copy(fromHost:into:)")
        try cudaDevice.makeCurrent()
        try driver.check(profiled("stream weights " + ProfileTable.bytes(tensor.byteCount)) {
            driver.cuMemcpyHtoDAsync(dst, source, tensor.byteCount, stream)
        }, "cuMemcpyHtoDAsync_v2")
    }

    /// One cuMemcpyDtoHAsync on this stream (asynchronous into page-locked memory).
    public func copy(_ tensor: Tensor, toHost destination: UnsafeMutableRawPointer) throws {
        guard tensor.byteCount > 0 else { return }
        let src = try pointer(tensor, "copy(_:toHost:)")
        try cudaDevice.makeCurrent()
        try driver.check(profiled("KV cache to host " + ProfileTable.bytes(tensor.byteCount)) {
            driver.cuMemcpyDtoHAsync(destination, src, tensor.byteCount, stream)
        }, "cuMemcpyDtoHAsync_v2")
    }
}
