import Foundation

/// A compute device: its identity, its memory and the streams that issue work to it.
///
/// A stream is a `Backend`: the op interface, bound to one device. A device's streams share its
/// allocator and its plan caches (GEMM algorithms, cuDNN plans, compiled kernels); work on different
/// streams is ordered by events (`Backend.recordEvent()`, `Backend.wait(for:)`), across devices too.
/// Identity is the object: two streams are on one device when their `device`s are the same object.
public protocol Device: AnyObject, Sendable {
    /// "cpu", "cuda:0", ...
    var name: String { get }
    /// A new stream of this device (the CPU, whose ops are synchronous, has one).
    func makeStream() throws -> any Backend
    /// Memory in use and at the peak, when the device keeps count.
    func memoryStatistics() -> MemoryStatistics?
    /// Whether a stream of this device reads `other`'s memory directly (the same device, host memory
    /// on the CPU, or GPU peer access).
    func canRead(from other: any Device) -> Bool
}

extension Device {
    /// Whether `other` is this device.
    public func isSame(as other: any Device) -> Bool { self === other }
}

/// A copy engine between devices: a backend that can copy a tensor of another device into its own memory
/// without going through host floats (GPU peer copies, or pinned host staging).
public protocol DeviceCopying: Backend {
    /// `tensor` (of another device, ready on its stream) copied into this stream's device.
    func copy(fromOtherDevice tensor: Tensor) throws -> Tensor
}

extension Tensor {
    /// This tensor for work on `stream`, ready once `ready` (an event of the producing stream) is reached.
    ///
    /// On the same device the memory is shared and `stream` waits for the event on the device (no host wait);
    /// on another device of the same kind it is copied by the destination's copy engine (`DeviceCopying`: a
    /// GPU peer copy, ordered by the event on the device), else through host memory (the host waits first). The caller keeps this tensor alive
    /// until the work reading the result is done.
    public func handedOver(to stream: any Backend, ready: (any BackendEvent)?) throws -> Tensor {
        if stream.device.isSame(as: backend.device) {
            if let ready { try stream.wait(for: ready) }
            return issued(on: stream)
        }
        if let copier = stream as? DeviceCopying, type(of: backend.device) == type(of: stream.device) {
            if let ready { try stream.wait(for: ready) }     // events order streams of different GPUs too
            return try copier.copy(fromOtherDevice: self)
        }
        try ready?.synchronize()
        let bytes = try backend.downloadBytes(self)
        return try bytes.withUnsafeBytes { try stream.upload($0, shape: shape, dtype: dtype) }
    }
}

/// A stream whose device must be bound to the calling thread before work is issued to it (a CUDA context).
/// Its ops bind it themselves where they need to; code that issues to streams of several devices in turn from
/// one thread (a `Communicator`'s ranks) binds each before its part (`Backend.bindDevice()`), so that no
/// call lands on the previous device.
public protocol ThreadBoundStream: Backend {
    /// Makes this stream's device the calling thread's current one.
    func bindToCallingThread() throws
}

extension Backend {
    /// Binds this stream's device to the calling thread where the backend needs it (`ThreadBoundStream`);
    /// nothing otherwise.
    public func bindDevice() throws { try (self as? any ThreadBoundStream)?.bindToCallingThread() }
}

/// A stream that copies host memory into tensors of its device without the host waiting: how streamed
/// weights reach the device (`WanDiT.streamingBlocks`). The CPU's "copy" is a memcpy, so the same code runs
/// and is checked there.
public protocol HostToDeviceCopying: Backend {
    /// Host memory of `bytes` that this device copies from at the link's full rate (page-locked on CUDA).
    func makeHostBuffer(bytes: Int) throws -> any HostStorage
    /// Queues a copy of `tensor.byteCount` bytes at `source` into `tensor` on this stream. `source` must stay
    /// alive and unchanged until the stream has run the copy (an event recorded after it).
    func copy(fromHost source: UnsafeRawPointer, into tensor: Tensor) throws
    /// Queues a copy of `tensor`'s bytes (a tensor of this device) into host memory at `destination` on this
    /// stream (a KV cache in host memory writes its new rows back so). `destination` must stay alive until the
    /// stream has run it; from page-locked memory the host does not wait.
    func copy(_ tensor: Tensor, toHost destination: UnsafeMutableRawPointer) throws
}
