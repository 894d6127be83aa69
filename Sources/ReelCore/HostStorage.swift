/// Storage the CPU can address directly: host allocations and memory-mapped weight files.
/// The CPU backend computes on any `HostStorage`, so a loader can hand it mapped file bytes without
/// a copy.
public protocol HostStorage: TensorStorage {
    var baseAddress: UnsafeMutableRawPointer { get }
}

/// A backend that computes on host memory (`HostStorage`), so tensors can wrap existing host bytes.
public protocol HostBackend: Backend {}

extension Tensor {
    /// The first element's address when the tensor lives in host memory, nil otherwise.
    public var hostPointer: UnsafeMutableRawPointer? {
        (storage as? HostStorage).map { $0.baseAddress + byteOffset }
    }
}
