import Foundation
import ReelCore
import ReelCPU
import Testing

func referenceUnary(_ op: UnaryOp, _ x: Double) -> Double {
    switch op {
    case .silu: x / (1 + exp(-x))
    case .geluTanh: 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
    case .gelu: 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
    case .relu: max(x, 0)
    case .tanh: tanh(x)
    case .sigmoid: 1 / (1 + exp(-x))
    case .exp: exp(x)
    case .neg: -x
    case .square: x * x
    case .rsqrt: 1 / x.squareRoot()
    }
}

func referenceBinary(_ op: BinaryOp, _ a: Double, _ b: Double) -> Double {
    switch op {
    case .add: a + b
    case .sub: a - b
    case .mul: a * b
    case .div: a / b
    case .maximum: max(a, b)
    case .minimum: min(a, b)
    }
}

/// Values of `b` (shape `bs`) broadcast to `out`.
func broadcastValues(_ v: [Double], from bs: Shape, to out: Shape) -> [Double] {
    (0..<out.count).map { i in
        let idx = unravel(i, out.dims)
        let sub = (0..<bs.rank).map { a in bs.dims[a] == 1 ? 0 : idx[a + out.rank - bs.rank] }
        return v[ravel(sub, bs.dims)]
    }
}

@Suite struct ElementwiseTests {
    @Test(arguments: UnaryOp.allCases)
    func unaryMatchesReference(op: UnaryOp) throws {
        let cpu = CPUBackend()
        for (n, dtype) in [(1, DType.f32), (1003, .f32), (77, .bf16), (65, .f16)] {
            var (x, xr) = try randomTensor(cpu, [n], dtype, seed: 61, scale: 3)
            if op == .rsqrt {                                   // its domain: x > 0
                x = try cpu.affine(try cpu.unary(.square, x), scale: 1, bias: 0.5)
                xr = try x.toFloats().map(Double.init)
            }
            let y = try cpu.unary(op, x)
            #expect(y.dtype == dtype && y.shape == x.shape)
            let e = nmse(try y.toFloats(), xr.map { referenceUnary(op, $0) })
            #expect(e < tolerance(dtype, f32: 1e-12), "\(op) \(n) \(dtype): nmse \(e)")
        }
    }

    @Test func expHandlesExtremes() throws {
        let cpu = CPUBackend()
        let y = try cpu.unary(.exp, try cpu.tensor([-1000, -87, 0, 88, 1000, -.infinity], shape: [6])).toFloats()
        #expect(y[0] == 0 && y[2] == 1 && y[4] == .infinity && y[5] == 0)
        #expect(abs(Double(y[1]) / exp(-87.0) - 1) < 1e-5 && abs(Double(y[3]) / exp(88.0) - 1) < 1e-5)
    }

    @Test(arguments: BinaryOp.allCases)
    func binaryBroadcasts(op: BinaryOp) throws {
        let cpu = CPUBackend()
        let cases: [(Shape, Shape)] = [([2, 3, 20], [20]), ([2, 1, 9], [3, 1]), ([5], []), ([4, 7], [4, 7]),
                                       ([1], [6, 7]), ([3, 1, 5, 1], [1, 4, 1, 6]), ([2, 2, 1000], [2, 1, 1000])]
        for (i, (sa, sb)) in cases.enumerated() {
            let (a, ar) = try randomTensor(cpu, sa, seed: 70 + UInt64(i))
            var (b, br) = try randomTensor(cpu, sb, .bf16, seed: 80 + UInt64(i))
            if op == .div {  // keep divisors away from zero
                br = br.map { $0 < 0 ? $0 - 1 : $0 + 1 }
                b = try cpu.tensor(br.map(Float.init), shape: sb, dtype: .f32)
            }
            let y = try cpu.binary(op, a, b)
            let out = broadcastShapes(sa, sb)!
            #expect(y.shape == out && y.dtype == .f32)
            let av = broadcastValues(ar, from: sa, to: out), bv = broadcastValues(br, from: sb, to: out)
            let e = nmse(try y.toFloats(), zip(av, bv).map { referenceBinary(op, $0, $1) })
            #expect(e < 1e-13, "\(op) \(sa) \(sb): nmse \(e)")
        }
        #expect(throws: ReelError.self) { try cpu.binary(op, try cpu.zeros([2, 3]), try cpu.zeros([4, 3])) }
    }

    @Test func axpbyAffineClamp() throws {
        let cpu = CPUBackend()
        let (x, xr) = try randomTensor(cpu, [3, 37], seed: 91)
        let (y, yr) = try randomTensor(cpu, [3, 37], .bf16, seed: 92)
        #expect(nmse(try cpu.axpby(0.3, x, -1.7, y).toFloats(), zip(xr, yr).map { 0.3 * $0 - 1.7 * $1 }) < 1e-13)
        #expect(nmse(try cpu.affine(x, scale: 0.5, bias: 0.5).toFloats(), xr.map { $0 * 0.5 + 0.5 }) < 1e-13)
        #expect(nmse(try cpu.clamp(y, min: -1, max: 0.5).toFloats(), yr.map { min(max($0, -1), 0.5) }) < 1e-13)
        #expect(try cpu.clamp(y, min: -1, max: 0.5).dtype == .bf16)
        #expect(throws: ReelError.self) { try cpu.axpby(1, x, 1, try cpu.zeros([37, 3])) }
    }

    @Test func modulateBroadcastsScaleAndShift() throws {
        let cpu = CPUBackend()
        let xs: Shape = [2, 5, 3, 24]
        let (x, xr) = try randomTensor(cpu, xs, .bf16, seed: 93)
        for (ss, hs) in [(Shape([2, 5, 1, 24]), Shape([24])), (Shape([2, 1, 1, 1]), Shape([1, 5, 3, 24]))] {
            let (s, sr) = try randomTensor(cpu, ss, seed: 94)
            let (h, hr) = try randomTensor(cpu, hs, seed: 95)
            let y = try cpu.modulate(x, scale: s, shift: h)
            #expect(y.dtype == .bf16 && y.shape == xs)
            let sv = broadcastValues(sr, from: ss, to: xs), hv = broadcastValues(hr, from: hs, to: xs)
            let ref = (0..<xs.count).map { xr[$0] * (1 + sv[$0]) + hv[$0] }
            #expect(nmse(try y.toFloats(), ref) < tolerance(.bf16))
        }
        #expect(throws: ReelError.self) { try cpu.modulate(x, scale: try cpu.zeros([2, 6, 1, 24]), shift: try cpu.zeros([24])) }
    }
}

@Suite struct NormTests {
    static let widths = [1, 7, 64, 133]

    @Test(arguments: widths)
    func layerNorm(c: Int) throws {
        let cpu = CPUBackend()
        let (x, xr) = try randomTensor(cpu, [3, 5, c], seed: 101, scale: 2)
        let (w, wr) = try randomTensor(cpu, [c], seed: 102)
        let (b, br) = try randomTensor(cpu, [c], seed: 103)
        for affine in [false, true] {
            let y = try cpu.layerNorm(x, weight: affine ? w : nil, bias: affine ? b : nil, eps: 1e-6)
            var ref = [Double]()
            for r in 0..<15 {
                let row = Array(xr[r * c ..< (r + 1) * c])
                let mean = row.reduce(0, +) / Double(c)
                let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c)
                for j in 0..<c {
                    let n = (row[j] - mean) / (v + 1e-6).squareRoot()
                    ref.append(affine ? n * wr[j] + br[j] : n)
                }
            }
            let e = nmse(try y.toFloats(), ref)
            #expect(e < 1e-11, "c \(c) affine \(affine): nmse \(e)")
        }
    }

    @Test(arguments: widths)
    func rmsAndL2Norm(c: Int) throws {
        let cpu = CPUBackend()
        let (x, xr) = try randomTensor(cpu, [4, c], .bf16, seed: 104)
        let (w, wr) = try randomTensor(cpu, [c], seed: 105)
        let rms = try cpu.rmsNorm(x, weight: w, eps: 1e-6)
        let l2 = try cpu.l2Norm(x, weight: w, scale: Float(c).squareRoot(), eps: 1e-12)
        var rmsRef = [Double](), l2Ref = [Double]()
        for r in 0..<4 {
            let row = Array(xr[r * c ..< (r + 1) * c])
            let ss = row.map { $0 * $0 }.reduce(0, +)
            for j in 0..<c {
                rmsRef.append(row[j] / (ss / Double(c) + 1e-6).squareRoot() * wr[j])
                l2Ref.append(row[j] / max(ss.squareRoot(), 1e-12) * Double(c).squareRoot() * wr[j])
            }
        }
        #expect(rms.dtype == .bf16)
        #expect(nmse(try rms.toFloats(), rmsRef) < tolerance(.bf16))
        #expect(nmse(try l2.toFloats(), l2Ref) < tolerance(.bf16))
        // The eps floor of l2Norm: a zero row stays zero.
        let z = try cpu.l2Norm(try cpu.zeros([1, c]), weight: nil, scale: 1, eps: 1e-12).toFloats()
        #expect(z.allSatisfy { $0 == 0 })
    }

    @Test(arguments: widths)
    func softmax(c: Int) throws {
        let cpu = CPUBackend()
        let (x, xr) = try randomTensor(cpu, [6, c], seed: 106, scale: 5)
        var ref = [Double]()
        for r in 0..<6 {
            let row = Array(xr[r * c ..< (r + 1) * c])
            let m = row.max()!
            let e = row.map { exp($0 - m) }
            let s = e.reduce(0, +)
            ref += e.map { $0 / s }
        }
        #expect(nmse(try cpu.softmax(x).toFloats(), ref) < 1e-12)
    }

    @Test func rejectsWrongWeight() throws {
        let cpu = CPUBackend()
        #expect(throws: ReelError.self) { try cpu.layerNorm(try cpu.zeros([2, 8]), weight: try cpu.zeros([7]), bias: nil, eps: 1e-6) }
        #expect(throws: ReelError.self) { try cpu.rmsNorm(try cpu.zeros([2, 8]), weight: try cpu.zeros([9]), eps: 1e-6) }
    }
}

@Suite struct RoPETests {
    /// Wan's rope_apply: pair i of a head rotates by pos_axis * theta^(-2j / (2 n_axis)).
    func reference(_ x: [Double], b: Int, grid: RoPEGrid, heads: Int, d: Int) -> [Double] {
        let (pt, ph, pw) = RoPEGrid.pairSplit(headDim: d)
        var out = x
        for bi in 0..<b {
            for l in 0..<grid.tokens {
                let f = l / (grid.height * grid.width), y = (l / grid.width) % grid.height, xx = l % grid.width
                for h in 0..<heads {
                    for p in 0..<(d / 2) {
                        let angle: Double
                        if p < pt { angle = Double(grid.frameOffset + f) / pow(10_000, Double(2 * p) / Double(2 * pt)) }
                        else if p < pt + ph { angle = Double(y) / pow(10_000, Double(2 * (p - pt)) / Double(2 * ph)) }
                        else { angle = Double(xx) / pow(10_000, Double(2 * (p - pt - ph)) / Double(2 * pw)) }
                        let i = ((bi * grid.tokens + l) * heads + h) * d + 2 * p
                        out[i] = x[i] * cos(angle) - x[i + 1] * sin(angle)
                        out[i + 1] = x[i] * sin(angle) + x[i + 1] * cos(angle)
                    }
                }
            }
        }
        return out
    }

    @Test func splitsLikeWan() {
        #expect(RoPEGrid.pairSplit(headDim: 128) == (22, 21, 21))
    }

    @Test(arguments: [(128, 2, 3, 4, 7), (16, 1, 2, 5, 2000), (6, 3, 1, 1, 0)])
    func matchesReference(c: (Int, Int, Int, Int, Int)) throws {
        let (d, frames, height, width, offset) = c
        let cpu = CPUBackend()
        let grid = RoPEGrid(frames: frames, height: height, width: width, frameOffset: offset)
        let (x, xr) = try randomTensor(cpu, [2, grid.tokens, 3, d], seed: 111)
        let y = try cpu.rope3d(x, grid: grid)
        let e = nmse(try y.toFloats(), reference(xr, b: 2, grid: grid, heads: 3, d: d))
        #expect(e < 1e-13, "d \(d) offset \(offset): nmse \(e)")
        // bf16 in, bf16 out.
        let xb = try cpu.cast(x, to: .bf16)
        let yb = try cpu.rope3d(xb, grid: grid)
        #expect(yb.dtype == .bf16)
        #expect(nmse(try yb.toFloats(), reference(try xb.toFloats().map(Double.init), b: 2, grid: grid, heads: 3, d: d)) < tolerance(.bf16))
    }

    @Test func farFramesHaveNoLimit() throws {
        // LongLive's table stops at 1024 frames; positions here are computed, not looked up.
        let cpu = CPUBackend()
        let grid = RoPEGrid(frames: 1, height: 1, width: 1, frameOffset: 1_000_000)
        let (x, xr) = try randomTensor(cpu, [1, 1, 1, 128], seed: 112)
        #expect(nmse(try cpu.rope3d(x, grid: grid).toFloats(), reference(xr, b: 1, grid: grid, heads: 1, d: 128)) < 1e-13)
    }

    @Test func rejectsWrongTokenCount() throws {
        let cpu = CPUBackend()
        #expect(throws: ReelError.self) { try cpu.rope3d(try cpu.zeros([1, 5, 1, 8]), grid: RoPEGrid(frames: 1, height: 2, width: 2)) }
        #expect(throws: ReelError.self) { try cpu.rope3d(try cpu.zeros([1, 4, 1, 7]), grid: RoPEGrid(frames: 1, height: 2, width: 2)) }
    }
}

/// The fused adaLN and gated residual against their unfused definitions on a float64 reference.
@Suite struct FusedOpTests {
    let cpu = CPUBackend()

    @Test(arguments: [(3, 5, 20), (1, 7, 8), (2, 1, 33)])
    func modulatedLayerNormMatchesDefinition(_ dims: (Int, Int, Int)) throws {
        let (g, r, c) = dims
        // Scale and shift per group, both shared, and each shared on its own.
        for (scaleGroups, shiftGroups) in [(g, g), (1, 1), (g, 1), (1, g)] {
            let x = try cpu.randomNormal([g, r, c], seed: 1, offset: 0, dtype: .f32)
            let s = try cpu.randomNormal([scaleGroups, 1, c], seed: 2, offset: 0, dtype: .f32)
            let h = try cpu.randomNormal([shiftGroups, 1, c], seed: 3, offset: 0, dtype: .f32)
            let ours = try cpu.modulatedLayerNorm(x, scale: s, shift: h, eps: 1e-6).toFloats()
            let xv = try x.toFloats(), sv = try s.toFloats(), hv = try h.toFloats()
            var expected = [Double](repeating: 0, count: xv.count)
            for row in 0..<(g * r) {
                let vals = (0..<c).map { Double(xv[row * c + $0]) }
                let mean = vals.reduce(0, +) / Double(c)
                let variance = vals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c)
                let sg = scaleGroups == 1 ? 0 : row / r, hg = shiftGroups == 1 ? 0 : row / r
                for j in 0..<c {
                    let n = (vals[j] - mean) / (variance + 1e-6).squareRoot()
                    expected[row * c + j] = n * (1 + Double(sv[sg * c + j])) + Double(hv[hg * c + j])
                }
            }
            #expect(nmse(ours, expected) < 1e-12)
        }
    }

    @Test func gatedResidualMatchesDefinition() throws {
        let x = try cpu.randomNormal([3, 4, 19], seed: 4, offset: 0, dtype: .f32)
        let y = try cpu.randomNormal([3, 4, 19], seed: 5, offset: 0, dtype: .f32)
        let gate = try cpu.randomNormal([3, 1, 19], seed: 6, offset: 0, dtype: .f32)
        let ours = try cpu.gatedResidual(x, y, gate: gate).toFloats()
        let xv = try x.toFloats(), yv = try y.toFloats(), gv = try gate.toFloats()
        let expected = (0..<xv.count).map { i in Double(xv[i]) + Double(yv[i]) * Double(gv[(i / (4 * 19)) * 19 + i % 19]) }
        #expect(nmse(ours, expected) < 1e-12)
        #expect(throws: ReelError.self) { try cpu.gatedResidual(x, y, gate: try cpu.zeros([2, 1, 19])) }
    }
}
