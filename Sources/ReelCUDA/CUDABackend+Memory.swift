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
