import Foundation
import ReelCore

/// An element type as a weight file stores it: every `DType`, plus float64, which Reel has no
/// tensors of and loads as f32.
enum StoredType: Equatable, Sendable, CustomStringConvertible {
    case native(DType)
    case f64

    var size: Int {
        switch self {
        case .native(let d): d.size
        case .f64: 8
        }
    }

    /// The dtype a tensor gets when the caller does not ask for one.
    var loadedDType: DType {
        switch self {
        case .native(let d): d
        case .f64: .f32
        }
    }

    var description: String {
        switch self {
        case .native(let d): d.rawValue
        case .f64: "f64"
        }
    }
}

/// Where a tensor's elements lie in a mapped file and how to read them.
///
/// The loader has already checked that every element the shape and strides reach lies inside
/// `storage` and that `storage` lies inside the file.
struct StoredTensor: Sendable {
    let file: MappedFile
    /// The bytes of the tensor's storage (the whole tensor for safetensors; a torch storage,
    /// which several views may share, for a checkpoint).
    let storageOffset: Int
    let storageByteCount: Int
    let type: StoredType
    let shape: Shape
    /// Offset of element 0 within the storage, in elements.
    let elementOffset: Int
    /// Strides in elements; nil when the tensor is contiguous row-major.
    let strides: [Int]?
    /// The file stores multi-byte elements big-endian (a torch checkpoint's `byteorder`).
    let bigEndian: Bool

    var info: TensorInfo { TensorInfo(dtype: type.loadedDType, shape: shape, storedType: type.description) }

    /// Strides equal to row-major ones on every axis that has more than one entry.
    private var isContiguous: Bool {
        guard let strides else { return true }
        let rowMajor = shape.strides
        for (i, d) in shape.dims.enumerated() where d > 1 && strides[i] != rowMajor[i] { return false }
        return true
    }

    /// The tensor on `backend` in `dtype` (the stored dtype when nil). Zero-copy when the backend
    /// computes on host memory, no conversion is asked, and the bytes are contiguous, aligned and
    /// in the machine's byte order.
    /// `key` names the tensor in errors.
    func load(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor {
        let target = dtype ?? type.loadedDType
        let count = shape.count
        if count == 0 { return try backend.allocate(shape, dtype: target) }
        let size = type.size
        let byteCount = count * size
        if isContiguous, !bigEndian, type == .native(target) {
            let src = file.bytes(at: storageOffset + elementOffset * size, count: byteCount)
            let start = src.baseAddress!  // non-empty range of a non-empty mapping
            if backend is any HostBackend, Int(bitPattern: start) % size == 0 {
                let region = MappedRegion(file: file, start: start, byteCount: byteCount)
                return Tensor(storage: region, shape: shape, dtype: target, backend: backend)
            }
            return try backend.upload(src, shape: shape, dtype: target)
        }
        // The rest copies into host memory. A view may be far larger than its storage (stride 0,
        // as `expand` makes): refuse one that could not be held rather than fail in an allocation.
        let largest = count * max(size, 4)
        if largest > Self.memoryLimit {
            throw ReelError.badFile(path: file.path, message: "tensor '\(key)' \(shape) needs \(largest) bytes, "
                + "more than this machine's \(Self.memoryLimit) bytes of memory")
        }
        if type == .native(target) {
            let bytes = gather()
            return try bytes.withUnsafeBytes { try backend.upload($0, shape: shape, dtype: target) }
        }
        // A conversion: decode every element to float32 once, straight from the mapping when the
        // layout allows, into the tensor itself when the target is f32 on host memory.
        let mapped = file.bytes(at: storageOffset + elementOffset * size, count: isContiguous ? byteCount : 0)
        let direct = isContiguous && !bigEndian && Int(bitPattern: mapped.baseAddress) % size == 0
        let gathered = direct ? [] : gather()
        return try gathered.withUnsafeBytes { g in
            let raw = direct ? mapped : g
            if target == .f32, backend is any HostBackend {
                let t = try backend.allocate(shape, dtype: .f32)
                if let p = t.hostPointer {
                    decode(raw, into: UnsafeMutableBufferPointer(start: p.assumingMemoryBound(to: Float.self), count: count))
                    return t
                }
            }
            var floats = [Float](repeating: 0, count: count)
            floats.withUnsafeMutableBufferPointer { decode(raw, into: $0) }
            let encoded = try HostConversion.encode(floats, as: target)
            return try encoded.withUnsafeBytes { try backend.upload($0, shape: shape, dtype: target) }
        }
    }

    /// Decodes `out.count` contiguous native-order elements of `type` (aligned) to float32.
    private func decode(_ raw: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<Float>) {
        switch type {
        case .native(let d): HostConversion.decode(raw, from: d, into: out)
        case .f64:
            for i in 0..<out.count { out[i] = Float(raw.load(fromByteOffset: i * 8, as: Double.self)) }
        }
    }

    static let memoryLimit = Int(clamping: ProcessInfo.processInfo.physicalMemory)

    /// The elements as contiguous row-major bytes in the machine's byte order.
    private func gather() -> [UInt8] {
        let count = shape.count
        let size = type.size
        var out = [UInt8](repeating: 0, count: count * size)
        let src = file.bytes(at: storageOffset, count: storageByteCount)
        let strides = self.strides ?? shape.strides
        let rank = shape.rank
        out.withUnsafeMutableBytes { dst in
            if rank == 0 {
                dst.baseAddress!.copyMemory(from: src.baseAddress! + elementOffset * size, byteCount: size)
                return
            }
            // Odometer over every axis but the last; the last axis is copied as a run when its
            // stride is 1, element by element otherwise.
            var index = [Int](repeating: 0, count: rank)
            let inner = shape.dims[rank - 1]
            let innerStride = strides[rank - 1]
            var written = 0
            while written < count * size {
                var offset = elementOffset
                for a in 0..<(rank - 1) { offset += index[a] * strides[a] }
                if innerStride == 1 {
                    (dst.baseAddress! + written).copyMemory(from: src.baseAddress! + offset * size, byteCount: inner * size)
                    written += inner * size
                } else {
                    for j in 0..<inner {
                        (dst.baseAddress! + written).copyMemory(from: src.baseAddress! + (offset + j * innerStride) * size, byteCount: size)
                        written += size
                    }
                }
                var a = rank - 2
                while a >= 0 {
                    index[a] += 1
                    if index[a] < shape.dims[a] { break }
                    index[a] = 0
                    a -= 1
                }
            }
            if bigEndian && size > 1 {
                for e in 0..<count {
                    let p = dst.baseAddress! + e * size
                    for k in 0..<(size / 2) {
                        let t = p.load(fromByteOffset: k, as: UInt8.self)
                        p.storeBytes(of: p.load(fromByteOffset: size - 1 - k, as: UInt8.self), toByteOffset: k, as: UInt8.self)
                        p.storeBytes(of: t, toByteOffset: size - 1 - k, as: UInt8.self)
                    }
                }
            }
        }
        return out
    }
}

/// Overflow-checked arithmetic for sizes read from untrusted files.
enum CheckedSize {
    /// The product of `dims`, nil on overflow or a negative entry.
    static func product(_ dims: [Int]) -> Int? {
        var n = 1
        for d in dims {
            guard d >= 0 else { return nil }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = p
        }
        return n
    }

    /// The largest element index `offset + sum((dim - 1) * stride)` a strided view reaches, nil on
    /// overflow. Only meaningful when every dim is positive.
    static func lastIndex(offset: Int, dims: [Int], strides: [Int]) -> Int? {
        var last = offset
        for (d, s) in zip(dims, strides) {
            let (m, o1) = (d - 1).multipliedReportingOverflow(by: s)
            let (a, o2) = last.addingReportingOverflow(m)
            if o1 || o2 { return nil }
            last = a
        }
        return last
    }
}
