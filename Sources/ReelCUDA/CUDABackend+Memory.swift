import ReelCore

extension CUDABackend: MemoryReporting {
    /// The caching allocator's figures: live blocks, their peak, and live plus cached (what the
    /// device has given Reel). Block sizes are rounded as the allocator rounds them.
    public func memoryStatistics() -> MemoryStatistics {
        let a = device.allocator
        return MemoryStatistics(inUse: a.liveBytes, peak: a.peakBytes, reserved: a.liveBytes + a.cachedBytes)
    }

    public func resetPeakMemory() { device.allocator.resetPeak() }
}
