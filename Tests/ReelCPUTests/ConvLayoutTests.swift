import Foundation
import ReelCore
import ReelCPU
import Testing

/// Naive float64 channel-last 3D convolution with zero padding.
func referenceConv3d(_ x: [Double], _ xs: Shape, _ w: [Double], _ ws: Shape, bias: [Double]?,
                     stride: (Int, Int, Int), padding: ConvPadding) -> ([Double], Shape) {
    let (n, t, h, wd, cin) = (xs[0], xs[1], xs[2], xs[3], xs[4])
    let (cout, kt, kh, kw) = (ws[0], ws[1], ws[2], ws[3])
    let to = (t + padding.t.0 + padding.t.1 - kt) / stride.0 + 1
    let ho = (h + padding.h.0 + padding.h.1 - kh) / stride.1 + 1
    let wo = (wd + padding.w.0 + padding.w.1 - kw) / stride.2 + 1
    let os: Shape = [n, to, ho, wo, cout]
    var out = [Double](repeating: 0, count: os.count)
    for b in 0..<n { for ot in 0..<to { for oy in 0..<ho { for ox in 0..<wo { for co in 0..<cout {
        var s = bias?[co] ?? 0
        for dt in 0..<kt { for dy in 0..<kh { for dx in 0..<kw {
            let it = ot * stride.0 + dt - padding.t.0, iy = oy * stride.1 + dy - padding.h.0, ix = ox * stride.2 + dx - padding.w.0
            guard it >= 0, it < t, iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
            for ci in 0..<cin {
                s += x[ravel([b, it, iy, ix, ci], xs.dims)] * w[ravel([co, dt, dy, dx, ci], ws.dims)]
            }
        }}}
        out[ravel([b, ot, oy, ox, co], os.dims)] = s
    }}}}}
    return (out, os)
}

@Suite struct ConvTests {
    @Test(arguments: gemmPaths)
    func conv3dMatchesReference(path: GEMMPath) throws {
        let cpu = CPUBackend(gemm: path)
        // (x, weight, stride, padding): causal time padding, strides in time and space, a 1x1x1.
        let cases: [(Shape, Shape, (Int, Int, Int), ConvPadding)] = [
            ([1, 4, 5, 6, 3], [4, 3, 3, 3, 3], (1, 1, 1), .causal(t: 2, hw: 1)),
            ([2, 3, 7, 5, 5], [6, 1, 3, 3, 5], (1, 2, 2), ConvPadding(h: (0, 1), w: (0, 1))),
            ([1, 5, 3, 4, 2], [3, 3, 1, 1, 2], (2, 1, 1), .causal(t: 2, hw: 0)),
            ([1, 2, 3, 3, 17], [9, 1, 1, 1, 17], (1, 1, 1), ConvPadding()),
            ([1, 1, 4, 4, 2], [2, 1, 2, 2, 2], (1, 2, 2), ConvPadding()),
        ]
        for (i, (xs, ws, stride, padding)) in cases.enumerated() {
            let (x, xr) = try randomTensor(cpu, xs, seed: 200 + UInt64(i))
            let (w, wr) = try randomTensor(cpu, ws, seed: 300 + UInt64(i))
            let (b, br) = try randomTensor(cpu, [ws[0]], seed: 400 + UInt64(i))
            let y = try cpu.conv3d(x, weight: w, bias: b, stride: stride, padding: padding)
            let (ref, os) = referenceConv3d(xr, xs, wr, ws, bias: br, stride: stride, padding: padding)
            #expect(y.shape == os)
            let e = nmse(try y.toFloats(), ref)
            #expect(e < 1e-12, "case \(i): nmse \(e)")
        }
    }

    @Test func conv2dAndHalfInputs() throws {
        let cpu = CPUBackend()
        let (x, xr) = try randomTensor(cpu, [1, 6, 5, 4], .bf16, seed: 501)
        let (w, wr) = try randomTensor(cpu, [3, 3, 3, 4], .bf16, seed: 502)
        let y = try cpu.conv2d(x, weight: w, bias: nil, padding: (1, 1))
        #expect(y.shape == [1, 6, 5, 3] && y.dtype == .bf16)
        let (ref, _) = referenceConv3d(xr, [1, 1, 6, 5, 4], wr, [3, 1, 3, 3, 4], bias: nil, stride: (1, 1, 1),
                                       padding: ConvPadding(h: (1, 1), w: (1, 1)))
        #expect(nmse(try y.toFloats(), ref) < tolerance(.bf16))
    }

    @Test func rejectsBadConvolutions() throws {
        let cpu = CPUBackend()
        let x = try cpu.zeros([1, 2, 4, 4, 3])
        #expect(throws: ReelError.self) { try cpu.conv3d(x, weight: try cpu.zeros([2, 1, 3, 3, 4]), bias: nil, stride: (1, 1, 1), padding: ConvPadding()) }
        #expect(throws: ReelError.self) { try cpu.conv3d(x, weight: try cpu.zeros([2, 3, 3, 3, 3]), bias: nil, stride: (1, 1, 1), padding: ConvPadding()) }
        #expect(throws: ReelError.self) { try cpu.conv3d(x, weight: try cpu.zeros([2, 1, 1, 1, 3]), bias: try cpu.zeros([3]), stride: (1, 1, 1), padding: ConvPadding()) }
    }

    @Test func upsampleNearest() throws {
        let cpu = CPUBackend()
        for dtype in [DType.f32, .bf16] {
            let (x, xr) = try randomTensor(cpu, [2, 3, 4, 5], dtype, seed: 601)
            let y = try cpu.upsampleNearest(x, scaleH: 2, scaleW: 3)
            #expect(y.shape == [2, 6, 12, 5] && y.dtype == dtype)
            let ref = (0..<y.count).map { i -> Double in
                let idx = unravel(i, y.shape.dims)
                return xr[ravel([idx[0], idx[1] / 2, idx[2] / 3, idx[3]], [2, 3, 4, 5])]
            }
            #expect(try y.toFloats().map(Double.init) == ref)
        }
    }
}

@Suite struct LayoutTests {
    @Test func concatSliceAndCopy() throws {
        let cpu = CPUBackend()
        let (a, ar) = try randomTensor(cpu, [2, 3, 4], seed: 701)
        let (b, br) = try randomTensor(cpu, [2, 5, 4], seed: 702)
        let c = try cpu.concat([a, b], axis: 1)
        #expect(c.shape == [2, 8, 4])
        let cv = try c.toFloats().map(Double.init)
        for n in 0..<2 {
            #expect(Array(cv[n * 32 ..< n * 32 + 12]) == Array(ar[n * 12 ..< n * 12 + 12]))
            #expect(Array(cv[n * 32 + 12 ..< n * 32 + 32]) == Array(br[n * 20 ..< n * 20 + 20]))
        }
        let s = try cpu.slice(c, axis: -2, start: 3, length: 5)
        #expect(try s.toFloats() == b.toFloats())
        // copy into the middle of a bf16 tensor converts.
        let dst = try cpu.zeros([2, 8, 4], dtype: .bf16)
        try cpu.copy(b, into: dst, axis: 1, at: 2)
        let dv = try dst.toFloats()
        #expect(dv[0 ..< 8].allSatisfy { $0 == 0 })
        #expect(nmse(Array(dv[8 ..< 28]), Array(br[0 ..< 20])) < tolerance(.bf16))
        #expect(throws: ReelError.self) { try cpu.copy(b, into: dst, axis: 1, at: 4) }
        #expect(throws: ReelError.self) { try cpu.concat([a, try cpu.zeros([2, 3, 5])], axis: 1) }
        #expect(throws: ReelError.self) { try cpu.slice(a, axis: 1, start: 2, length: 2) }
    }

    @Test func permuteAnyOrder() throws {
        let cpu = CPUBackend()
        let dims = [2, 3, 4, 5]
        for dtype in [DType.f32, .bf16] {
            let (x, xr) = try randomTensor(cpu, Shape(dims), dtype, seed: 703)
            for order in [[0, 2, 1, 3], [3, 2, 1, 0], [1, 0, 2, 3], [0, 1, 3, 2], [0, 1, 2, 3]] {
                let y = try cpu.permute(x, order)
                let os = order.map { dims[$0] }
                #expect(y.shape == Shape(os) && y.dtype == dtype)
                let ref = (0..<y.count).map { i -> Double in
                    let o = unravel(i, os)
                    var idx = [Int](repeating: 0, count: 4)
                    for (k, a) in order.enumerated() { idx[a] = o[k] }
                    return xr[ravel(idx, dims)]
                }
                #expect(try y.toFloats().map(Double.init) == ref, "order \(order)")
            }
        }
        #expect(throws: ReelError.self) { try cpu.permute(try cpu.zeros([2, 3]), [0, 0]) }
    }

    @Test func castRoundTrips() throws {
        let cpu = CPUBackend()
        let (x, xr) = try randomTensor(cpu, [1001], seed: 704)
        for dtype in [DType.bf16, .f16, .fp8e4m3] {
            let y = try cpu.cast(x, to: dtype)
            #expect(y.dtype == dtype)
            let expected = try HostConversion.decode(HostConversion.encode(xr.map(Float.init), as: dtype), from: dtype)
            #expect(try y.toFloats() == expected)
            #expect(try cpu.cast(y, to: .f32).toFloats() == expected)
        }
        let ints = try cpu.cast(try cpu.tensor([1, -2, 3.0], shape: [3]), to: .int32)
        #expect(try ints.dtype == .int32 && ints.toFloats() == [1, -2, 3])
    }

    @Test func embeddingInt32AndInt64() throws {
        let cpu = CPUBackend()
        let (table, tr) = try randomTensor(cpu, [10, 6], .bf16, seed: 705)
        let ids32 = try cpu.tensor([3, 0, 9, 3] as [Int32], shape: [2, 2])
        let ids: [Int64] = [7, 1, 1]
        let ids64 = try ids.withUnsafeBytes { try cpu.upload($0, shape: [3], dtype: .int64) }
        let y = try cpu.embedding(ids32, table: table)
        #expect(y.shape == [2, 2, 6] && y.dtype == .bf16)
        #expect(try y.toFloats().map(Double.init) == [3, 0, 9, 3].flatMap { Array(tr[$0 * 6 ..< $0 * 6 + 6]) })
        #expect(try cpu.embedding(ids64, table: table).toFloats().map(Double.init) == [7, 1, 1].flatMap { Array(tr[$0 * 6 ..< $0 * 6 + 6]) })
        #expect(throws: ReelError.self) { try cpu.embedding(try cpu.tensor([2, 10] as [Int32], shape: [2]), table: table) }
        #expect(throws: ReelError.self) { try cpu.embedding(try cpu.tensor([-1] as [Int32], shape: [1]), table: table) }
        #expect(throws: ReelError.self) { try cpu.embedding(try cpu.zeros([2]), table: table) }
    }

    @Test func fillAndRandomNormal() throws {
        let cpu = CPUBackend()
        for dtype in [DType.f32, .bf16, .f16] {
            let t = try cpu.allocate([37], dtype: dtype)
            try cpu.fill(t, with: 1.5)
            #expect(try t.toFloats() == [Float](repeating: 1.5, count: 37))
        }
        let r = try cpu.randomNormal([3, 50_001], seed: 42, offset: 1000, dtype: .f32).toFloats()
        #expect(r.indices.allSatisfy { r[$0] == PhiloxNormal.sample(seed: 42, index: 1000 + UInt64($0)) })
        let rb = try cpu.randomNormal([5], seed: 7, offset: 3, dtype: .bf16)
        #expect(rb.dtype == .bf16)
        #expect(try rb.toFloats() == (0..<5).map { BFloat16Bits.toFloat(BFloat16Bits.fromFloat(PhiloxNormal.sample(seed: 7, index: 3 + UInt64($0)))) })
    }
}

@Suite struct StorageTests {
    @Test func foreignHostStorageAndOffsets() throws {
        // A tensor over host bytes that are not a CPUStorage (like a mapped weight file), at an offset.
        let cpu = CPUBackend()
        let values: [Float] = (0..<20).map { Float($0) - 7 }
        let bytes = [UInt8](repeating: 0xAB, count: 12) + values.withUnsafeBytes { Array($0) }
        let storage = ForeignHostStorage(bytes: bytes)
        let t = Tensor(storage: storage, byteOffset: 12, shape: [4, 5], dtype: .f32, backend: cpu)
        #expect(try cpu.unary(.relu, t).toFloats() == values.map { max($0, 0) })
        // A view narrowed to rows 1..<3 starts 5 elements further in.
        let rows = try t.narrowed(axis: 0, start: 1, length: 2)
        #expect(try cpu.affine(rows, scale: 1, bias: 0).toFloats() == Array(values[5 ..< 15]))
        let w = try cpu.tensor([Float](repeating: 1, count: 5), shape: [1, 5])
        #expect(try cpu.linear(rows, weight: w).toFloats() == [values[5 ..< 10].reduce(0, +), values[10 ..< 15].reduce(0, +)])
    }

    @Test func wrongBackendIsAnError() throws {
        let cpu = CPUBackend()
        let device = FakeDeviceBackend()
        let foreign = device.tensor([2, 3])
        let local = try cpu.zeros([2, 3])
        #expect(throws: ReelError.wrongBackend(op: "binary.add", expected: "cpu", got: "fake:0")) { try cpu.add(local, foreign) }
        #expect(throws: ReelError.self) { try cpu.matmul(foreign, local, transposeB: true, bias: nil) }
        #expect(throws: ReelError.self) { try cpu.permute(foreign, [1, 0]) }
        #expect(throws: ReelError.self) { try cpu.copy(foreign, into: local, axis: 0, at: 0) }
    }

    @Test func threadCountDoesNotChangeResults() throws {
        let (x, _) = try randomTensor(CPUBackend(), [64, 96], seed: 801)
        let (w, _) = try randomTensor(CPUBackend(), [40, 96], seed: 802)
        let one = CPUBackend(threads: 1, gemm: .own), many = CPUBackend(threads: 5, gemm: .own)
        #expect(try one.linear(x, weight: w).toFloats() == many.linear(x, weight: w).toFloats())
        #expect(try one.layerNorm(x, weight: nil, bias: nil, eps: 1e-6).toFloats() == many.layerNorm(x, weight: nil, bias: nil, eps: 1e-6).toFloats())
    }
}

@Suite struct ConversionTests {
    @Test func bf16EncodingMatchesScalarRounding() throws {
        let cpu = CPUBackend()
        // Ties, NaN, infinities, subnormals and ordinary values, past one SIMD width.
        var values: [Float] = [1 + 1.0 / 256, 1 + 3.0 / 256, .nan, .infinity, -.infinity, 1e-40, -0.0, 3.4e38]
        var rng = TestRNG(901)
        values += rng.normals(29, scale: 100)
        let x = try cpu.tensor(values, shape: [values.count])
        let y = try cpu.cast(x, to: .bf16)
        var bytes = [UInt8](repeating: 0, count: y.byteCount)
        try bytes.withUnsafeMutableBytes { try cpu.download(y, into: $0) }
        let got = bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
        #expect(got == values.map(BFloat16Bits.fromFloat))
    }
}
