import Foundation

/// A cap on the memory one device's allocations may hold (`--gpu-memory GB`), with the count of what they
/// hold now. The CUDA allocator keeps its own count (its cached and slab bytes count against the cap too) and
/// asks `admits`; the CPU backend, which has no allocator of its own, takes and gives through `take`/`give`, so
/// that a test on the CPU runs under the same cap.
public final class MemoryBudget: @unchecked Sendable {
    /// The cap in bytes (settable: `reel bench` builds its random weights before the cap applies).
    public var cap: Int {
        get { lock.withLock { capBytes } }
        set { lock.withLock { capBytes = newValue } }
    }
    private var capBytes: Int
    /// The device's name in error messages ("cuda:0", "cpu").
    public let device: String
    private let lock = NSLock()
    private var held = 0
    private var highest = 0

    public init(cap: Int, device: String) {
        self.capBytes = cap
        self.device = device
    }

    /// `gigabytes` GB (10^9 bytes, as `reel inspect` prints them) on `device`.
    public convenience init(gigabytes: Double, device: String) {
        self.init(cap: Int(gigabytes * 1e9), device: device)
    }

    /// Bytes held now and at the most.
    public var inUse: Int { lock.withLock { held } }
    public var peak: Int { lock.withLock { highest } }

    /// Counts `bytes` in, or throws `ReelError.overMemoryCap` (counting nothing) when they would pass the cap.
    public func take(_ bytes: Int) throws {
        try lock.withLock {
            guard held + bytes <= capBytes else {
                throw ReelError.overMemoryCap(device: device, requested: bytes, inUse: held, cap: capBytes)
            }
            held += bytes
            highest = max(highest, held)
        }
    }

    /// Counts `bytes` out.
    public func give(_ bytes: Int) { lock.withLock { held -= bytes } }

    /// "1.23 GB" (10^9 bytes), "12.3 MB".
    public static func gigabytes(_ bytes: Int) -> String {
        let n = Double(bytes)
        return n >= 1e9 ? String(format: "%.2f GB", n / 1e9) : String(format: "%.1f MB", n / 1e6)
    }
}
