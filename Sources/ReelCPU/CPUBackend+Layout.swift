import Foundation
import ReelCore

extension CPUBackend {
    public func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor {
        let op = "concat"
        guard let first = tensors.first else { throw ReelError.invalidArgument(op: op, message: "no tensors") }
        let a = first.shape.normalize(axis)
        try require(a >= 0 && a < first.rank, op, "axis \(axis) out of range for \(first.shape)")
        var total = 0
        for t in tensors {
            try require(t.rank == first.rank, op, "ranks differ: \(first.shape) and \(t.shape)")
            for i in 0..<t.rank where i != a {
                try require(t.shape[i] == first.shape[i], op, "\(first.shape) and \(t.shape) differ on axis \(i)")
            }
            total += t.shape[a]
        }
        let out = try allocate(first.shape.replacing(axis: a, with: total), dtype: first.dtype)
        var offset = 0
        for t in tensors {
            try copy(t, into: out, axis: a, at: offset)
            offset += t.shape[a]
        }
        return out
    }

    public func slice(_ x: Tensor, axis: Int, start: Int, length: Int) throws -> Tensor {
        let op = "slice"
        let src = try host(x, op)
        let a = x.shape.normalize(axis)
        try require(a >= 0 && a < x.rank, op, "axis \(axis) out of range for \(x.shape)")
        try require(start >= 0 && length >= 0 && start + length <= x.shape[a], op,
                    "range \(start)..<\(start + length) out of bounds for axis \(a) of \(x.shape)")
        let out = try allocate(x.shape.replacing(axis: a, with: length), dtype: x.dtype)
        let (outer, extent, inner) = x.shape.split(at: a)
        let es = x.dtype.size, rowBytes = length * inner * es
        guard rowBytes > 0 else { return out }
        let dst = out.hostPointer!
        parallelFor(outer, grain: Swift.max(1, 16384 / rowBytes)) { r in
            for o in r {
                (dst + o * rowBytes).copyMemory(from: src + ((o * extent + start) * inner) * es, byteCount: rowBytes)
            }
        }
        return out
    }

    public func permute(_ x: Tensor, _ order: [Int]) throws -> Tensor {
        let op = "permute"
        let src = try host(x, op)
        try require(order.count == x.rank && Set(order) == Set(0..<x.rank), op,
                    "\(order) is not a permutation of the \(x.rank) axes of \(x.shape)")
        let outShape = Shape(order.map { x.shape[$0] })
        let out = try allocate(outShape, dtype: x.dtype)
        guard x.count > 0 else { return out }
        let dst = out.hostPointer!
        let inStrides = x.shape.strides
        // Merge output axes that stay adjacent and in order in the input; the last merged axis
        // is copied as a run (a memcpy when it is contiguous in the input).
        var dims: [Int] = [], strides: [Int] = []
        for (i, axis) in order.enumerated() where outShape[i] != 1 {
            let d = x.shape[axis], s = inStrides[axis]
            if let last = strides.last, last == s * d {
                dims[dims.count - 1] *= d
                strides[strides.count - 1] = s
            } else {
                dims.append(d); strides.append(s)
            }
        }
        if dims.isEmpty { dims = [1]; strides = [1] }
        let inner = dims.last!, innerStride = strides.last!
        let outerDims = Array(dims.dropLast()), outerStrides = Array(strides.dropLast())
        let rows = x.count / inner
        let es = x.dtype.size
        parallelFor(rows, grain: Swift.max(1, 4096 / inner)) { r in
            for row in r {
                var rem = row, offset = 0
                var axis = outerDims.count - 1
                while axis >= 0 {
                    offset += (rem % outerDims[axis]) * outerStrides[axis]
                    rem /= outerDims[axis]
                    axis -= 1
                }
                let d = dst + row * inner * es
                if innerStride == 1 {
                    d.copyMemory(from: src + offset * es, byteCount: inner * es)
                } else {
                    copyStrided(src + offset * es, innerStride, d, inner, es)
                }
            }
        }
        return out
    }

    public func cast(_ x: Tensor, to dtype: DType) throws -> Tensor {
        let src = try host(x, "cast")
        let out = try allocate(x.shape, dtype: dtype)
        let dst = out.hostPointer!
        let n = x.count
        if dtype == x.dtype {
            if n > 0 { dst.copyMemory(from: src, byteCount: x.byteCount) }
            return out
        }
        let from = x.dtype
        parallelFor(n, grain: 16384) { r in
            let tmp = UnsafeMutablePointer<Float>.allocate(capacity: 4096)
            defer { tmp.deallocate() }
            var i = r.lowerBound
            while i < r.upperBound {
                let m = Swift.min(4096, r.upperBound - i)
                decodeFloats(src + i * from.size, from, tmp, m)
                encodeFloats(tmp, dst + i * dtype.size, dtype, m)
                i += m
            }
        }
        return out
    }

    public func embedding(_ ids: Tensor, table: Tensor) throws -> Tensor {
        let op = "embedding"
        let ip = try host(ids, op), tp = try host(table, op)
        try require(ids.dtype == .int32 || ids.dtype == .int64, op, "ids must be int32 or int64, got \(ids.dtype)")
        try require(table.rank == 2, op, "table must be [V, C], got \(table.shape)")
        let v = table.shape[0], c = table.shape[1]
        let n = ids.count
        // Read and bounds-check every id before touching the table.
        var rows = [Int](repeating: 0, count: n)
        for i in 0..<n {
            let id = ids.dtype == .int32 ? Int(ip.load(fromByteOffset: i * 4, as: Int32.self))
                                         : Int(ip.load(fromByteOffset: i * 8, as: Int64.self))
            guard id >= 0 && id < v else {
                throw ReelError.invalidArgument(op: op, message: "id \(id) at position \(i) is outside the table of \(v) rows")
            }
            rows[i] = id
        }
        let out = try allocate(Shape(ids.shape.dims + [c]), dtype: table.dtype)
        let dst = out.hostPointer!
        let rowBytes = c * table.dtype.size
        guard rowBytes > 0 else { return out }
        rows.withUnsafeBufferPointer { rows in
            parallelFor(n, grain: Swift.max(1, 16384 / rowBytes)) { r in
                for i in r { (dst + i * rowBytes).copyMemory(from: tp + rows[i] * rowBytes, byteCount: rowBytes) }
            }
        }
        return out
    }

    public func randomNormal(_ shape: Shape, seed: UInt64, offset: UInt64, dtype: DType) throws -> Tensor {
        try require(dtype.isFloatingPoint, "randomNormal", "dtype must be floating point, got \(dtype)")
        return try makeOutput(shape, dtype) { out in
            parallelFor(shape.count, grain: 4096) { r in
                PhiloxNormal.fill(UnsafeMutableBufferPointer(start: out + r.lowerBound, count: r.count),
                                  seed: seed, offset: offset &+ UInt64(r.lowerBound))
            }
        }
    }
}

/// Copies `n` elements of `size` bytes read with element stride `stride` into contiguous `dst`.
@inline(__always)
func copyStrided(_ src: UnsafeRawPointer, _ stride: Int, _ dst: UnsafeMutableRawPointer, _ n: Int, _ size: Int) {
    switch size {
    case 4:
        let s = src.assumingMemoryBound(to: UInt32.self), d = dst.assumingMemoryBound(to: UInt32.self)
        for i in 0..<n { d[i] = s[i * stride] }
    case 2:
        let s = src.assumingMemoryBound(to: UInt16.self), d = dst.assumingMemoryBound(to: UInt16.self)
        for i in 0..<n { d[i] = s[i * stride] }
    case 8:
        let s = src.assumingMemoryBound(to: UInt64.self), d = dst.assumingMemoryBound(to: UInt64.self)
        for i in 0..<n { d[i] = s[i * stride] }
    default:
        for i in 0..<n { (dst + i * size).copyMemory(from: src + i * stride * size, byteCount: size) }
    }
}
