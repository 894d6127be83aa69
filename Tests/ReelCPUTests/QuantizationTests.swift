import Foundation
import Testing
import ReelCore
import ReelCPU

/// FP8 and INT8 rows (`quantizeRows`) and the quantized linear layer (`quantizedLinear`) on the CPU
/// backend: the definitions the CUDA kernels are checked against (`reel check-ops`).
@Suite struct QuantizationTests {
    let cpu = CPUBackend()

    @Test func rowsMapTheirLargestElementOntoFP8Max() throws {
        for dtype in [DType.f32, .bf16] {
            let (x, values) = try randomTensor(cpu, [5, 24], dtype, seed: 3, scale: 7)
            let q = try cpu.quantizeRows(x, to: .fp8e4m3)
            #expect(q.values.dtype == .fp8e4m3 && q.values.shape == x.shape && q.sourceType == dtype)
            let codes = try q.values.toFloats(), scales = try q.scales.toFloats()
            for r in 0..<5 {
                let row = values[(r * 24)..<((r + 1) * 24)]
                let amax = Float(row.map(abs).max()!)
                #expect(scales[r] == amax / 448)
                #expect(codes[(r * 24)..<((r + 1) * 24)].map(abs).max() == 448)
                for i in row.indices {
                    // Every value is on the FP8 grid and within half a step of x / scale (3 mantissa bits).
                    let code = codes[i], exact = Float(values[i]) / scales[r]
                    #expect(Float8E4M3Bits.toFloat(Float8E4M3Bits.fromFloat(code)) == code)
                    #expect(abs(code - exact) <= max(abs(exact) / 16, 1.0 / 1024), "row \(r) element \(i)")
                }
            }
        }
    }

    @Test func aZeroRowKeepsScaleOne() throws {
        let x = try cpu.tensor([0, 0, 0, 0, 1, -2, 0.5, 4], shape: [2, 4])
        let q = try cpu.quantizeRows(x, to: .fp8e4m3)
        #expect(try q.scales.toFloats() == [1, 4.0 / 448])
        #expect(try q.dequantized().toFloats() == [0, 0, 0, 0, 1, -2, 0.5, 4])
    }

    /// `dequantizeRows` (the FP8 KV cache's read) gives each code times its row's scale, rounded once to the
    /// output's dtype, for FP8 and INT8 rows alike; it refuses an output that is not floats of the rows' size.
    @Test(arguments: [DType.fp8e4m3, .int8]) func dequantizeRowsWritesTheScaledCodes(_ format: DType) throws {
        let (x, _) = try randomTensor(cpu, [6, 16], .f32, seed: 11, scale: 3)
        let q = try cpu.quantizeRows(x, to: format)
        let expected = try q.dequantized().toFloats()
        for dtype in [DType.f32, .bf16] {
            let out = try cpu.allocate([6, 16], dtype: dtype)
            try cpu.dequantizeRows(q, into: out)
            let got = try out.toFloats()
            let want = try cpu.cast(try cpu.tensor(expected, shape: [6, 16]), to: dtype).toFloats()
            #expect(got == want, "\(format) into \(dtype)")
        }
        #expect(throws: ReelError.self) { try cpu.dequantizeRows(q, into: try cpu.allocate([6, 15], dtype: .f32)) }
        #expect(throws: ReelError.self) { try cpu.dequantizeRows(q, into: try cpu.allocate([6, 16], dtype: .int8)) }
    }

    /// The FP8 linear layer is the float32 product of the dequantized operands, then bias, GELU and
    /// residual: computed here by hand in float64 from the codes and scales.
    @Test(arguments: [false, true]) func linearIsTheProductOfTheDequantizedRows(gelu: Bool) throws {
        let (m, n, k) = (6, 5, 32)
        let (x, _) = try randomTensor(cpu, [2, 3, k], .f32, seed: 5)
        let (w, _) = try randomTensor(cpu, [n, k], .f32, seed: 6, scale: 0.2)
        let (bias, b) = try randomTensor(cpu, [n], .f32, seed: 7)
        let (residual, res) = try randomTensor(cpu, [2, 3, n], .f32, seed: 8)
        let (xq, wq) = (try cpu.quantizeRows(x, to: .fp8e4m3), try cpu.quantizeRows(w, to: .fp8e4m3))
        let y = try cpu.quantizedLinear(xq, weight: wq, bias: bias, gelu: gelu, adding: residual, into: nil)
        #expect(y.shape == [2, 3, n] && y.dtype == .f32)
        let (xc, xs, wc, ws) = (try xq.values.toFloats(), try xq.scales.toFloats(), try wq.values.toFloats(), try wq.scales.toFloats())
        var expected = [Double]()
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for c in 0..<k { sum += Double(xc[i * k + c]) * Double(wc[j * k + c]) }
                var v = sum * Double(xs[i]) * Double(ws[j]) + b[j]
                if gelu { v = 0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v))) }
                expected.append(v + res[i * n + j])
            }
        }
        #expect(nmse(try y.toFloats(), expected) < 1e-12)
    }

    /// FP8 rounding is real (the result is not the unquantized product) and small (3 mantissa bits
    /// per operand: an nmse of a few 1e-4 for random rows).
    @Test func linearIsCloseToButNotTheUnquantizedProduct() throws {
        let (x, _) = try randomTensor(cpu, [64, 256], .f32, seed: 1)
        let (w, _) = try randomTensor(cpu, [48, 256], .f32, seed: 2, scale: 1 / 16)
        let exact = try cpu.linear(x, weight: w, bias: nil).toFloats()
        let fp8 = try cpu.quantizedLinear(try cpu.quantizeRows(x, to: .fp8e4m3), weight: try cpu.quantizeRows(w, to: .fp8e4m3), bias: nil, gelu: false,
                                          adding: nil, into: nil).toFloats()
        let e = nmse(fp8, exact.map(Double.init))
        print("FP8 linear vs float32: nmse \(e)")
        #expect(e > 1e-5 && e < 2e-3)
    }

    @Test func writesIntoAViewAndKeepsTheSourceType() throws {
        let (x, _) = try randomTensor(cpu, [4, 16], .bf16, seed: 11)
        let (w, _) = try randomTensor(cpu, [8, 16], .bf16, seed: 12)
        let (xq, wq) = (try cpu.quantizeRows(x, to: .fp8e4m3), try cpu.quantizeRows(w, to: .fp8e4m3))
        let whole = try cpu.quantizedLinear(xq, weight: wq, bias: nil, gelu: false, adding: nil, into: nil)
        #expect(whole.dtype == .bf16)
        let big = try cpu.zeros([6, 8], dtype: .bf16)
        _ = try cpu.quantizedLinear(xq, weight: wq, bias: nil, gelu: false, adding: nil, into: try big.narrowed(axis: 0, start: 2, length: 4))
        let got = try big.toFloats()
        #expect(Array(got[0..<16]) == [Float](repeating: 0, count: 16))
        #expect(Array(got[16...]) == (try whole.toFloats()))
    }

    @Test func refusesWhatItCannotMean() throws {
        let (x, _) = try randomTensor(cpu, [4, 16], .f32, seed: 1)
        let (w, _) = try randomTensor(cpu, [8, 16], .f32, seed: 2)
        let (xq, wq) = (try cpu.quantizeRows(x, to: .fp8e4m3), try cpu.quantizeRows(w, to: .fp8e4m3))
        // FP8 codes without their scales would be silently wrong numbers.
        #expect(throws: ReelError.self) { try cpu.matmul(xq.values, w, transposeB: true, bias: nil) }
        #expect(throws: ReelError.self) { try cpu.quantizedLinear(xq, weight: try cpu.quantizeRows(x.reshaped([8, 8]), to: .fp8e4m3), bias: nil,
                                                                   gelu: false, adding: nil, into: nil) }
        #expect(throws: ReelError.self) { try cpu.quantizedLinear(xq, weight: wq, bias: try cpu.zeros([3]), gelu: false, adding: nil, into: nil) }
        #expect(throws: ReelError.self) { try cpu.quantizedLinear(xq, weight: wq, bias: nil, gelu: false, adding: try cpu.zeros([4, 8]),
                                                                   into: try cpu.zeros([4, 8])) }
        #expect(throws: ReelError.self) { try cpu.quantizeRows(xq.values, to: .fp8e4m3) }
        #expect(throws: ReelError.self) { try RowQuantized(values: xq.values, scales: try cpu.zeros([3]), sourceType: .f32) }
    }

    // MARK: INT8

    @Test func int8RowsMapTheirLargestElementOnto127() throws {
        for dtype in [DType.f32, .bf16] {
            let (x, values) = try randomTensor(cpu, [5, 24], dtype, seed: 3, scale: 7)
            let q = try cpu.quantizeRows(x, to: .int8)
            #expect(q.values.dtype == .int8 && q.values.shape == x.shape && q.sourceType == dtype)
            let codes = try q.values.toFloats(), scales = try q.scales.toFloats()
            for r in 0..<5 {
                let row = values[(r * 24)..<((r + 1) * 24)]
                let amax = Float(row.map(abs).max()!)
                #expect(scales[r] == amax / 127)
                #expect(codes[(r * 24)..<((r + 1) * 24)].map(abs).max() == 127)
                for i in row.indices {
                    // An integer in [-127, 127], x * (127 / max) rounded to nearest (half a step at most).
                    let code = codes[i], exact = Float(values[i]) * (127 / amax)
                    #expect(code == code.rounded() && abs(code) <= 127)
                    #expect(code == exact.rounded(.toNearestOrEven), "row \(r) element \(i)")
                }
            }
        }
        // Ties go to even; a zero row keeps scale 1.
        let q = try cpu.quantizeRows(try cpu.tensor([0, 0, 0, 0, 127, 0.5, 1.5, -2.5], shape: [2, 4]), to: .int8)
        #expect(try q.values.toFloats() == [0, 0, 0, 0, 127, 0, 2, -2])
        #expect(try q.scales.toFloats() == [1, 1])
    }

    /// The INT8 linear layer: the codes' products summed exactly (int32), times x's row scale, then the
    /// weight's, in float32; then bias, GELU and residual. Computed here by hand from the codes and scales.
    @Test(arguments: [false, true]) func int8LinearIsTheExactIntegerProductScaled(gelu: Bool) throws {
        let (m, n, k) = (6, 5, 96)
        let (x, _) = try randomTensor(cpu, [2, 3, k], .f32, seed: 5)
        let (w, _) = try randomTensor(cpu, [n, k], .f32, seed: 6, scale: 0.2)
        let (bias, b) = try randomTensor(cpu, [n], .f32, seed: 7)
        let (residual, res) = try randomTensor(cpu, [2, 3, n], .f32, seed: 8)
        let (xq, wq) = (try cpu.quantizeRows(x, to: .int8), try cpu.quantizeRows(w, to: .int8))
        let y = try cpu.quantizedLinear(xq, weight: wq, bias: bias, gelu: gelu, adding: residual, into: nil)
        #expect(y.shape == [2, 3, n] && y.dtype == .f32)
        let (xc, xs, wc, ws) = (try xq.values.toFloats(), try xq.scales.toFloats(), try wq.values.toFloats(), try wq.scales.toFloats())
        var expected = [Double](), products = [Float]()
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0
                for c in 0..<k { sum += Int(xc[i * k + c]) * Int(wc[j * k + c]) }
                products.append(Float(sum) * xs[i] * ws[j])
                var v = Double(products.last!) + b[j]
                if gelu { v = 0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v))) }
                expected.append(v + res[i * n + j])
            }
        }
        #expect(nmse(try y.toFloats(), expected) < 1e-12)
        // Without bias, GELU or residual the result is the scaled sum bit for bit.
        let plain = try cpu.quantizedLinear(xq, weight: wq, bias: nil, gelu: false, adding: nil, into: nil)
        #expect(try plain.toFloats() == products)
    }

    /// INT8 rounding is real and small: a step of max|row| / 127 per operand (an nmse of order 1e-4 for
    /// random Gaussian rows, whose largest element is ~3 sigma); scales misplaced (x's row scale on the
    /// weight's columns) are far off.
    @Test func int8LinearIsCloseToButNotTheUnquantizedProduct() throws {
        let (x, _) = try randomTensor(cpu, [64, 256], .f32, seed: 1)
        let (w, _) = try randomTensor(cpu, [48, 256], .f32, seed: 2, scale: 1 / 16)
        let exact = try cpu.linear(x, weight: w, bias: nil).toFloats().map(Double.init)
        let (xq, wq) = (try cpu.quantizeRows(x, to: .int8), try cpu.quantizeRows(w, to: .int8))
        let int8 = try cpu.quantizedLinear(xq, weight: wq, bias: nil, gelu: false, adding: nil, into: nil).toFloats()
        let e = nmse(int8, exact)
        // The wrong variant: x's rows scaled by the weight's first scales (misplaced).
        let misplaced = try RowQuantized(values: xq.values, scales: try cpu.tensor(Array(try wq.scales.toFloats().prefix(48))
            + [Float](repeating: 1, count: 16), shape: [64]), sourceType: .f32)
        let wrong = nmse(try cpu.quantizedLinear(misplaced, weight: wq, bias: nil, gelu: false, adding: nil, into: nil).toFloats(), exact)
        print("INT8 linear vs float32: nmse \(e) (scales misplaced: \(wrong))")
        #expect(e > 1e-6 && e < 2e-3)
        #expect(wrong > 0.1)
    }

    @Test func int8RefusesMixedFormats() throws {
        let (x, _) = try randomTensor(cpu, [4, 16], .f32, seed: 1)
        let (w, _) = try randomTensor(cpu, [8, 16], .f32, seed: 2)
        let (xq, wq) = (try cpu.quantizeRows(x, to: .int8), try cpu.quantizeRows(w, to: .fp8e4m3))
        #expect(throws: ReelError.self) { try cpu.quantizedLinear(xq, weight: wq, bias: nil, gelu: false, adding: nil, into: nil) }
        #expect(throws: ReelError.self) { try cpu.quantizeRows(x, to: .uint8) }
        #expect(throws: ReelError.self) { try cpu.quantizeRows(xq.values, to: .int8) }
        #expect(throws: ReelError.self) { try cpu.matmul(xq.values, w, transposeB: true, bias: nil) }
    }
}
