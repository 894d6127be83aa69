/// Memory that holds a tensor's elements on some backend (host memory, a memory-mapped file, a CUDA
/// allocation). A storage is shared by every tensor viewing it; it is freed when the last one goes.
public protocol TensorStorage: AnyObject, Sendable {
    /// Size of the allocation in bytes.
    var byteCount: Int { get }
}

/// An n-dimensional, contiguous, row-major array of one dtype living on one backend.
///
/// Tensors are values in spirit: ops return new tensors and never modify their inputs, except the
/// few ops whose name says so (`copy(_:into:axis:at:)`). A tensor may be a view (reshape, or a
/// narrow of the outermost non-unit axis) that shares its storage with another one.
public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    public let storage: any TensorStorage
    /// Offset of element 0 from the start of `storage`, in bytes.
    public let byteOffset: Int
    public let shape: Shape
    public let dtype: DType
    public let backend: any Backend

    public init(storage: any TensorStorage, byteOffset: Int = 0, shape: Shape, dtype: DType, backend: any Backend) {
        precondition(shape.isValid, "negative dimension in \(shape)")
        precondition(byteOffset >= 0 && byteOffset + shape.count * dtype.size <= storage.byteCount,
                     "tensor \(shape) \(dtype) at offset \(byteOffset) overruns its storage of \(storage.byteCount) bytes")
        self.storage = storage
        self.byteOffset = byteOffset
        self.shape = shape
        self.dtype = dtype
        self.backend = backend
    }

    public var count: Int { shape.count }
    public var rank: Int { shape.rank }
    public var byteCount: Int { shape.count * dtype.size }

    public var description: String { "Tensor(\(shape), \(dtype), \(backend.name))" }

    /// The same elements under another shape (no copy). One dimension may be -1.
    public func reshaped(_ newDims: [Int]) throws -> Tensor {
        var dims = newDims
        if let hole = dims.firstIndex(of: -1) {
            let known = dims.enumerated().filter { $0.offset != hole }.map(\.element).reduce(1, *)
            try require(known > 0 && count % known == 0, "reshape", "cannot infer -1 in \(newDims) for \(shape)")
            dims[hole] = count / known
        }
        let s = Shape(dims)
        try require(s.isValid && s.count == count, "reshape", "\(shape) has \(count) elements, \(s) has \(s.count)")
        return Tensor(storage: storage, byteOffset: byteOffset, shape: s, dtype: dtype, backend: backend)
    }

    public func reshaped(_ newShape: Shape) throws -> Tensor { try reshaped(newShape.dims) }

    /// A view of `length` entries along `axis` starting at `start`. Without a copy this is only
    /// possible when every axis before `axis` has extent 1 (e.g. frames of a [1, F, ...] tensor,
    /// or rows of a matrix); otherwise use `Backend.slice`.
    public func narrowed(axis: Int, start: Int, length: Int) throws -> Tensor {
        let a = shape.normalize(axis)
        try require(a >= 0 && a < rank, "narrow", "axis \(axis) out of range for \(shape)")
        try require(start >= 0 && length >= 0 && start + length <= shape[a], "narrow",
                    "range \(start)..<\(start + length) out of bounds for axis \(a) of \(shape)")
        try require(shape.dims[..<a].allSatisfy { $0 == 1 }, "narrow",
                    "axes before \(a) of \(shape) are not all 1; use slice (copies)")
        let inner = shape.dims[(a + 1)...].reduce(1, *)
        return Tensor(storage: storage, byteOffset: byteOffset + start * inner * dtype.size,
                      shape: shape.replacing(axis: a, with: length), dtype: dtype, backend: backend)
    }

    /// The same elements with later ops issued on `backend`: another stream of the device that holds
    /// them (`Backend.makeStream()`). The caller orders the two streams (the producing stream
    /// synchronized, or an event waited for) and keeps this tensor alive until the work reading it on
    /// `backend` is done.
    public func issued(on backend: any Backend) -> Tensor {
        Tensor(storage: storage, byteOffset: byteOffset, shape: shape, dtype: dtype, backend: backend)
    }

    /// Copies the elements to the host as float32.
    public func toFloats() throws -> [Float] { try backend.downloadFloats(self) }
}
