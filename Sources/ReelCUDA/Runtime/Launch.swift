import Foundation
import ReelCore

/// Kernel parameters for cuLaunchKernel: each value is copied into its own aligned slot and the
/// array of slot addresses is what the driver reads (it copies them at launch time).
struct KernelArgs {
    private var slots: [UnsafeMutableRawPointer] = []

    mutating func add<T: BitwiseCopyable>(_ value: T) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(MemoryLayout<T>.size, 1), alignment: max(MemoryLayout<T>.alignment, 8))
        p.storeBytes(of: value, as: T.self)
        slots.append(p)
    }

    func withPointers<R>(_ body: (UnsafeMutablePointer<UnsafeMutableRawPointer?>) throws -> R) rethrows -> R {
        var ptrs: [UnsafeMutableRawPointer?] = slots
        return try ptrs.withUnsafeMutableBufferPointer { try body($0.baseAddress!) }
    }

    func free() { slots.forEach { $0.deallocate() } }
}

/// The kernels' Bcast struct: extents of up to 8 output axes and, per operand (up to 3), the
/// element stride along each (0 where broadcast). rank 0 marks the all-contiguous fast path.
struct BcastArg: BitwiseCopyable {
    static let maxRank = 8
    typealias Axes = (Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64)
    var dims: Axes = (1, 1, 1, 1, 1, 1, 1, 1)
    var stride: (Axes, Axes, Axes) = ((0, 0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0, 0))
    var rank: Int32 = 0
    var pad: Int32 = 0

    static let contiguous = BcastArg()

    /// Whether the 8-wide kernels apply: the innermost axis is a multiple of 8 and every operand
    /// either runs along it (stride 1) or is constant across it (stride 0).
    func vectorizable(operands: Int) -> Bool {
        if rank == 0 { return true }
        return withUnsafeBytes(of: dims) { d in
            withUnsafeBytes(of: stride) { st in
                let r = Int(rank) - 1
                guard d.load(fromByteOffset: r * 8, as: Int64.self) % 8 == 0 else { return false }
                return (0..<operands).allSatisfy { k in
                    let s = st.load(fromByteOffset: (k * BcastArg.maxRank + r) * 8, as: Int64.self)
                    return s == 0 || s == 1
                }
            }
        }
    }

    /// Broadcast of `operands` against `out`; axes of extent 1 are merged away first.
    static func make(out: Shape, operands: [Shape], op: String) throws -> BcastArg {
        if operands.allSatisfy({ $0 == out }) { return .contiguous }
        let r = out.rank
        // Element strides of each operand along each output axis (0 for broadcast axes).
        var strides: [[Int]] = operands.map { s in
            let st = s.strides
            return (0..<r).map { a in
                let ai = a - (r - s.rank)
                return ai < 0 || s.dims[ai] == 1 ? 0 : st[ai]
            }
        }
        var dims = out.dims
        // Merge adjacent axes where every operand is contiguous across the pair, to fit in 8.
        var a = dims.count - 1
        while a > 0 {
            let mergeable = strides.allSatisfy { $0[a - 1] == $0[a] * dims[a] }
            if mergeable || dims[a] == 1 {
                if dims[a] == 1 {
                    dims.remove(at: a); for k in strides.indices { strides[k].remove(at: a) }
                } else {
                    dims[a - 1] *= dims[a]; dims.remove(at: a)
                    for k in strides.indices { strides[k][a - 1] = strides[k][a]; strides[k].remove(at: a) }
                }
            }
            a -= 1
        }
        try require(dims.count <= maxRank, op, "broadcast over \(out) needs \(dims.count) axes; at most \(maxRank) are supported")
        var b = BcastArg()
        b.rank = Int32(max(dims.count, 1))
        withUnsafeMutableBytes(of: &b.dims) { p in for (i, d) in dims.enumerated() { p.storeBytes(of: Int64(d), toByteOffset: i * 8, as: Int64.self) } }
        withUnsafeMutableBytes(of: &b.stride) { p in
            for k in strides.indices { for (i, s) in strides[k].enumerated() { p.storeBytes(of: Int64(s), toByteOffset: (k * maxRank + i) * 8, as: Int64.self) } }
        }
        return b
    }
}

extension DType {
    /// The kernels' DT_* code.
    var kernelCode: Int32 {
        switch self {
        case .f32: 0
        case .f16: 1
        case .bf16: 2
        case .int32: 3
        case .int64: 4
        case .int8: 5
        case .uint8, .bool: 6
        case .fp8e4m3: 7
        }
    }
}

extension CUDABackend {
    /// Launches `file`/`kernel` on this stream and checks the launch. `detail` (the op a generic
    /// kernel runs) follows the kernel's name in the profiler's label.
    func launch(_ file: String, _ kernel: String, grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int = 0,
                detail: @autoclosure () -> String = "", _ build: (inout KernelArgs) -> Void) throws {
        try cudaDevice.makeCurrent()
        let fn = try cudaDevice.function(file, kernel)
        if sharedBytes > 48 * 1024 {
            try driver.check(driver.cuFuncSetAttribute(fn, CUDADriver.funcAttrMaxDynamicSharedBytes, Int32(sharedBytes)),
                             "cuFuncSetAttribute(\(kernel), max dynamic shared = \(sharedBytes))")
        }
        var args = KernelArgs()
        build(&args)
        defer { args.free() }
        let status = profiled(detail().isEmpty ? kernel : kernel + " " + detail()) {
            args.withPointers { p in
                driver.cuLaunchKernel(fn, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2), UInt32(block.0), UInt32(block.1), UInt32(block.2),
                                      UInt32(sharedBytes), stream, p, nil)
            }
        }
        try driver.check(status, "cuLaunchKernel(\(kernel), grid \(grid), block \(block))")
    }

    /// A 1-D grid-stride launch over `n` elements: enough blocks to fill the GPU, no more.
    func launch1D(_ file: String, _ kernel: String, n: Int, detail: @autoclosure () -> String = "",
                  _ build: (inout KernelArgs) -> Void) throws {
        if n == 0 { return }
        let blocks = min((n + 255) / 256, cudaDevice.info.multiprocessors * 16)
        try launch(file, kernel, grid: (blocks, 1, 1), block: (256, 1, 1), detail: detail(), build)
    }

    /// Device address as a kernel argument (nil tensors become null pointers).
    func arg(_ t: Tensor?, _ op: String) throws -> UInt64 {
        guard let t else { return 0 }
        return try pointer(t, op)
    }

    func requireFloat(_ t: Tensor, _ op: String) throws {
        try require([.f32, .f16, .bf16].contains(t.dtype), op, "\(t.dtype) is not a float storage type (f32, f16, bf16)")
    }
}
