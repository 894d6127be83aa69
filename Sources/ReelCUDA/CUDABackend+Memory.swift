import ReelCore

extension CUDABackend: MemoryReporting {
    /// The caching allocator's figures: live blocks, their peak, and live plus cached plus unused slab
    /// space (what the device has given Reel). Block sizes are rounded as the allocator rounds them.
    public func memoryStatistics() -> MemoryStatistics {
        let a = device.allocator
        return MemoryStatistics(inUse: a.liveBytes, peak: a.peakBytes, reserved: a.liveBytes + a.cachedBytes + a.slabSpareBytes)
    }

    public func resetPeakMemory() { device.allocator.resetPeak() }
}
