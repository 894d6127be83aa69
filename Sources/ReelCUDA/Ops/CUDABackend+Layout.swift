import Foundation
import ReelCore

// Layout ops (Kernels/layout.cu): they move raw elements, so every dtype is served by one kernel.
extension CUDABackend {
    /// dst rows of `len` elements at `dstStride` / `dstOffset` from src rows at `srcStride` / `srcOffset`.
    func stridedCopy(_ src: Tensor, _ dst: Tensor, outer: Int, len: Int, srcStride: Int, srcOffset: Int,
                     dstStride: Int, dstOffset: Int, op: String) throws {
        let ps = try arg(src, op), pd = try arg(dst, op)
        if outer * len == 0 { return }
        if outer == 1 || (len == srcStride && len == dstStride) {
            // One contiguous run: the copy engine is faster than a kernel.
            let esize = src.dtype.size
            let bytes = outer * len * esize
            try driver.check(profiled("memcpy " + ProfileTable.bytes(bytes)) {
                driver.cuMemcpyDtoDAsync(pd + UInt64(dstOffset * esize), ps + UInt64(srcOffset * esize), bytes, stream)
            }, "cuMemcpyDtoDAsync_v2")
            return
        }
        try launch1D("layout", "strided_copy", n: outer * len) { k in
            k.add(ps); k.add(pd); k.add(Int64(outer)); k.add(Int64(len)); k.add(Int64(srcStride)); k.add(Int64(srcOffset))
            k.add(Int64(dstStride)); k.add(Int64(dstOffset)); k.add(Int32(src.dtype.size))
        }
    }

    public func copy(_ src: Tensor, into dst: Tensor, axis: Int, at offset: Int) throws {
        try require(src.dtype == dst.dtype, "copy", "dtypes differ: \(src.dtype) into \(dst.dtype)")
        try require(src.rank == dst.rank, "copy", "ranks differ: \(src.shape) into \(dst.shape)")
        let a = dst.shape.normalize(axis)
        try require(a >= 0 && a < dst.rank, "copy", "axis \(axis) out of range for \(dst.shape)")
        for i in 0..<dst.rank where i != a {
            try require(src.shape[i] == dst.shape[i], "copy", "\(src.shape) into \(dst.shape): axis \(i) differs")
        }
        try require(offset >= 0 && offset + src.shape[a] <= dst.shape[a], "copy",
                    "\(src.shape[a]) entries at \(offset) overrun axis \(a) of \(dst.shape)")
        let (outer, ext, inner) = src.shape.split(at: a)
        let dstExt = dst.shape[a]
        try stridedCopy(src, dst, outer: outer, len: ext * inner, srcStride: ext * inner, srcOffset: 0,
                        dstStride: dstExt * inner, dstOffset: offset * inner, op: "copy")
    }

    public func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor {
        guard let first = tensors.first else { throw ReelError.invalidArgument(op: "concat", message: "no tensors") }
        let a = first.shape.normalize(axis)
        try require(a >= 0 && a < first.rank, "concat", "axis \(axis) out of range for \(first.shape)")
        var total = 0
        for t in tensors {
            try require(t.dtype == first.dtype && t.rank == first.rank, "concat", "\(t) does not match \(first)")
            for i in 0..<t.rank where i != a {
                try require(t.shape[i] == first.shape[i], "concat", "\(t.shape) and \(first.shape) differ on axis \(i)")
            }
            total += t.shape[a]
        }
        let out = try allocate(first.shape.replacing(axis: a, with: total), dtype: first.dtype)
        var at = 0
        for t in tensors {
            try copy(t, into: out, axis: a, at: at)
            at += t.shape[a]
        }
        return out
    }

    public func slice(_ x: Tensor, axis: Int, start: Int, length: Int) throws -> Tensor {
        let a = x.shape.normalize(axis)
        try require(a >= 0 && a < x.rank, "slice", "axis \(axis) out of range for \(x.shape)")
        try require(start >= 0 && length >= 0 && start + length <= x.shape[a], "slice",
                    "range \(start)..<\(start + length) out of bounds for axis \(a) of \(x.shape)")
        let (outer, ext, inner) = x.shape.split(at: a)
        let out = try allocate(x.shape.replacing(axis: a, with: length), dtype: x.dtype)
        try stridedCopy(x, out, outer: outer, len: length * inner, srcStride: ext * inner, srcOffset: start * inner,
                        dstStride: length * inner, dstOffset: 0, op: "slice")
        return out
    }

    public func permute(_ x: Tensor, _ order: [Int]) throws -> Tensor {
        try require(order.count == x.rank && Set(order) == Set(0..<x.rank), "permute", "\(order) is not a permutation of \(x.rank) axes")
        let outShape = Shape(order.map { x.shape[$0] })
        let out = try allocate(outShape, dtype: x.dtype)
        if order == Array(0..<x.rank) || x.count == 0 {
            let (po, px) = (try arg(out, "permute"), try arg(x, "permute"))
            try driver.check(profiled("memcpy " + ProfileTable.bytes(x.byteCount)) { driver.cuMemcpyDtoDAsync(po, px, x.byteCount, stream) },
                             "cuMemcpyDtoDAsync_v2")
            return out
        }
        // Output axes with their source strides; unit axes dropped, runs that stay contiguous merged.
        let st = x.shape.strides
        var dims: [Int] = [], strides: [Int] = []
        for o in order where x.shape[o] != 1 {
            if let last = dims.last, strides.last! == st[o] * x.shape[o] {
                dims[dims.count - 1] = last * x.shape[o]; strides[strides.count - 1] = st[o]
            } else { dims.append(x.shape[o]); strides.append(st[o]) }
        }
        try require(dims.count <= BcastArg.maxRank, "permute",
                    "\(x.shape) by \(order) needs \(dims.count) axes after merging; at most \(BcastArg.maxRank) are supported")
        var bc = BcastArg()
        bc.rank = Int32(max(dims.count, 1))
        withUnsafeMutableBytes(of: &bc.dims) { p in for (i, d) in dims.enumerated() { p.storeBytes(of: Int64(d), toByteOffset: i * 8, as: Int64.self) } }
        withUnsafeMutableBytes(of: &bc.stride) { p in for (i, s) in strides.enumerated() { p.storeBytes(of: Int64(s), toByteOffset: i * 8, as: Int64.self) } }
        let px = try arg(x, "permute"), po = try arg(out, "permute")
        let per = 16 / x.dtype.size
        if strides.last == 1, dims.last! % per == 0, px % 16 == 0, po % 16 == 0 {
            try launch1D("layout", "permute_v16", n: x.count / per) { k in
                k.add(px); k.add(po); k.add(Int64(x.count / per)); k.add(bc); k.add(Int32(per))
            }
            return out
        }
        try launch1D("layout", "permute", n: x.count) { k in
            k.add(px); k.add(po); k.add(Int64(x.count)); k.add(bc); k.add(Int32(x.dtype.size))
        }
        return out
    }

    public func upsampleNearest(_ x: Tensor, scaleH: Int, scaleW: Int) throws -> Tensor {
        try require(x.rank >= 3, "upsampleNearest", "expected [..., H, W, C], got \(x.shape)")
        try require(scaleH >= 1 && scaleW >= 1, "upsampleNearest", "scales must be >= 1, got \(scaleH), \(scaleW)")
        let r = x.rank
        let (h, w, c) = (x.shape[r - 3], x.shape[r - 2], x.shape[r - 1])
        let outer = x.shape.dims[..<(r - 3)].reduce(1, *)
        var dims = x.shape.dims
        dims[r - 3] = h * scaleH; dims[r - 2] = w * scaleW
        let out = try allocate(Shape(dims), dtype: x.dtype)
        let px = try arg(x, "upsampleNearest"), po = try arg(out, "upsampleNearest")
        if (c * x.dtype.size) % 16 == 0, px % 16 == 0, po % 16 == 0 {
            let cv = c * x.dtype.size / 16
            try launch1D("layout", "upsample_nearest_v16", n: out.count * x.dtype.size / 16) { k in
                k.add(px); k.add(po); k.add(Int64(outer)); k.add(Int32(h)); k.add(Int32(w)); k.add(Int32(cv))
                k.add(Int32(scaleH)); k.add(Int32(scaleW))
            }
            return out
        }
        try launch1D("layout", "upsample_nearest", n: out.count) { k in
            k.add(px); k.add(po); k.add(Int64(outer)); k.add(Int32(h)); k.add(Int32(w)); k.add(Int32(c))
            k.add(Int32(scaleH)); k.add(Int32(scaleW)); k.add(Int32(x.dtype.size))
        }
        return out
    }

    public func embedding(_ ids: Tensor, table: Tensor) throws -> Tensor {
        try require(ids.dtype == .int32 || ids.dtype == .int64, "embedding", "ids must be int32 or int64, got \(ids.dtype)")
        try require(table.rank == 2, "embedding", "table must be [V, C], got \(table.shape)")
        let (v, c) = (table.shape[0], table.shape[1])
        // Ids are few (a prompt's tokens): check them on the host rather than read out of bounds.
        var raw = [UInt8](repeating: 0, count: ids.byteCount)
        try raw.withUnsafeMutableBytes { try download(ids, into: $0) }
        let values: [Int] = raw.withUnsafeBytes { p in
            ids.dtype == .int32 ? p.bindMemory(to: Int32.self).map(Int.init) : p.bindMemory(to: Int64.self).map(Int.init)
        }
        if let bad = values.first(where: { $0 < 0 || $0 >= v }) {
            throw ReelError.invalidArgument(op: "embedding", message: "id \(bad) out of range for a table of \(v) rows")
        }
        let out = try allocate(Shape(ids.shape.dims + [c]), dtype: table.dtype)
        let pi = try arg(ids, "embedding"), pt = try arg(table, "embedding"), po = try arg(out, "embedding")
        try launch1D("layout", "embedding", n: out.count) { k in
            k.add(pi); k.add(Int32(ids.dtype == .int64 ? 1 : 0)); k.add(pt); k.add(po); k.add(Int64(ids.count)); k.add(Int64(c))
            k.add(Int32(table.dtype.size))
        }
        return out
    }
}
