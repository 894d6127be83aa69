import Foundation
import ReelCore
import ReelCPU
import ReelCUDA

/// Checks of the CUDA runtime that are not one op: each returns a line for the table or throws.
enum RuntimeCheck {
    static var all: [(String, (CUDABackend, CPUBackend) throws -> String)] { [
        ("randomNormal bit-identical to the host", randomExact),
        ("graph capture + replay = eager", graph),
        ("allocator: no cuMemAlloc in steady state", allocatorSteady),
        ("second stream ordered by an event", streams),
        ("bad input gives typed errors", errors),
        ("linearGELU epilogue is tanh GELU", geluEpilogue),
    ] }

    /// Which GELU cuBLASLt's epilogue is: an f32 GEMM (FP32 compute) with the epilogue forced on,
    /// against the CPU's tanh GELU and erf GELU of the same product. At unit-scale pre-activations
    /// the two GELUs differ by ~4e-8 nmse; the two f32 GEMMs by orders of magnitude less.
    static func geluEpilogue(_ gpu: CUDABackend, _ cpu: CPUBackend) throws -> String {
        let (m, k, n) = (512, 768, 1024)
        let specs = [InputSpec(shape: [m, k], dtype: .f32), InputSpec(shape: [n, k], dtype: .f32, kind: .scaled(1 / Float(k).squareRoot())),
                     InputSpec(shape: [n], dtype: .f32)]
        var g: [Tensor] = [], c: [Tensor] = []
        for (i, spec) in specs.enumerated() {
            let bytes = try spec.hostBytes(seed: 7000 + UInt64(i))
            try bytes.withUnsafeBytes { raw in
                g.append(try gpu.upload(raw, shape: spec.shape, dtype: spec.dtype))
                c.append(try cpu.upload(raw, shape: spec.shape, dtype: spec.dtype))
            }
        }
        let configured = gpu.geluEpilogue
        gpu.geluEpilogue = true
        defer { gpu.geluEpilogue = configured }
        let got = try gpu.linearGELU(g[0], weight: g[1], bias: g[2]).toFloats()
        let pre = try cpu.linear(c[0], weight: c[1], bias: c[2])
        let toTanh = OpCase.nmse(got, try cpu.unary(.geluTanh, pre).toFloats())
        let toErf = OpCase.nmse(got, try cpu.unary(.gelu, pre).toFloats())
        let figures = String(format: "nmse %.1e to tanh GELU, %.1e to erf", toTanh, toErf)
        if !(toTanh < toErf) { return "FAIL: closer to erf GELU (\(figures)): run with REEL_GELU_EPILOGUE=0" }
        if !(toTanh <= OpCase.tolerance(.f32)) { return "FAIL: tanh GELU but off (\(figures))" }
        return "ok (\(figures)\(configured ? "" : "; epilogue off: REEL_GELU_EPILOGUE=0"))"
    }

    static func randomExact(_ gpu: CUDABackend, _ cpu: CPUBackend) throws -> String {
        let n = 1 << 20
        let seed: UInt64 = 0x1234_5678_9ABC_DEF0, offset: UInt64 = 5_000_000_000
        let g = try gpu.randomNormal([n], seed: seed, offset: offset, dtype: .f32).toFloats()
        var mismatches = 0
        for i in 0..<n where g[i].bitPattern != PhiloxNormal.sample(seed: seed, index: offset + UInt64(i)).bitPattern { mismatches += 1 }
        if mismatches > 0 { return "FAIL: \(mismatches) of \(n) samples differ in some bit" }
        return "ok (\(n) samples, all bits equal)"
    }

    static func graph(_ gpu: CUDABackend, _ cpu: CPUBackend) throws -> String {
        let x = try gpu.randomNormal([64, 256], seed: 1, offset: 0, dtype: .bf16)
        let w = try gpu.randomNormal([512, 256], seed: 2, offset: 0, dtype: .bf16)
        let g = try gpu.randomNormal([512], seed: 3, offset: 0, dtype: .bf16)
        let kv = try gpu.randomNormal([1, 256, 4, 128], seed: 4, offset: 0, dtype: .bf16)
        // linear -> silu -> rmsNorm -> attention (cuDNN's when present): the DiT's kinds of launches.
        func step() throws -> Tensor {
            let y = try gpu.rmsNorm(gpu.unary(.silu, gpu.linear(x, weight: w)), weight: g, eps: 1e-6)  // [64, 512]
            return try gpu.attention(query: y.reshaped([1, 64, 4, 128]), key: kv, value: kv, scale: 0.088, bias: nil)
        }
        _ = try step()  // compile kernels, choose GEMM algorithms
        var captured: Tensor?
        let graph = try gpu.captureGraph { captured = try step() }
        // New input values, written in place; the replay must see them.
        try gpu.copy(try gpu.randomNormal([64, 256], seed: 9, offset: 0, dtype: .bf16), into: x, axis: 0, at: 0)
        try graph.replay()
        let replayed = try captured!.toFloats()
        let eager = try step().toFloats()
        let e = OpCase.nmse(replayed, eager)
        if e != 0 { return "FAIL: replay differs from eager run, nmse \(e)" }
        return "ok (replay bit-equal to eager, \(graph.retainedAllocations) buffers owned by the graph)"
    }

    static func allocatorSteady(_ gpu: CUDABackend, _ cpu: CPUBackend) throws -> String {
        let x = try gpu.randomNormal([4, 300, 1536], seed: 4, offset: 0, dtype: .bf16)
        let w = try gpu.randomNormal([1536, 1536], seed: 5, offset: 0, dtype: .bf16)
        func block() throws { _ = try gpu.layerNorm(gpu.unary(.geluTanh, gpu.linear(x, weight: w)), weight: nil, bias: nil, eps: 1e-6) }
        try block()
        let before = gpu.cudaDevice.allocatorStats.driverAllocations
        for _ in 0..<20 { try block() }
        try gpu.synchronize()
        let after = gpu.cudaDevice.allocatorStats.driverAllocations
        if after != before { return "FAIL: \(after - before) cuMemAlloc calls in 20 identical steps" }
        return "ok (0 cuMemAlloc calls in 20 steps)"
    }

    static func streams(_ gpu: CUDABackend, _ cpu: CPUBackend) throws -> String {
        let s2 = try gpu.makeStream()
        let a = try gpu.randomNormal([1 << 22], seed: 6, offset: 0, dtype: .f32)
        let big = try gpu.unary(.exp, a)  // work in flight on stream 1
        try s2.wait(for: try gpu.recordEvent())
        let b = try s2.unary(.neg, big)
        try s2.synchronize()
        let host = try a.toFloats()
        let got = try b.toFloats()
        let want = host.map { -Foundation.exp($0) }
        let e = OpCase.nmse(got, want)
        if !(e < 1e-10) { return "FAIL: nmse \(e) after the event wait" }
        return "ok (nmse \(String(format: "%.1e", e)))"
    }

    static func errors(_ gpu: CUDABackend, _ cpu: CPUBackend) throws -> String {
        var seen: [String] = []
        func expect(_ what: String, _ body: () throws -> Void) throws {
            do { try body() } catch let e as ReelError { seen.append(what); _ = e; return }
            throw ReelError.input("\(what): no ReelError thrown")
        }
        let a = try gpu.zeros([4, 8], dtype: .bf16), b = try gpu.zeros([5, 9], dtype: .bf16)
        try expect("matmul shapes") { _ = try gpu.matmul(a, b, transposeB: true, bias: nil) }
        try expect("wrong backend") { _ = try gpu.unary(.silu, try cpu.zeros([3], dtype: .f32)) }
        try expect("embedding id range") { _ = try gpu.embedding(try gpu.tensor([0, 99], shape: [2]), table: a) }
        try expect("attention shapes") { _ = try gpu.attention(query: a, key: b, value: b, scale: 1, bias: nil) }
        try expect("bad permutation") { _ = try gpu.permute(a, [0, 0]) }
        let frames = try gpu.zeros([2, 3, 8], dtype: .bf16), vec = try gpu.zeros([2, 1, 8], dtype: .f32)
        try expect("modulatedLayerNorm shapes") { _ = try gpu.modulatedLayerNorm(frames, scale: try gpu.zeros([3, 1, 8]), shift: vec, eps: 1e-6) }
        try expect("gatedResidual shapes") { _ = try gpu.gatedResidual(frames, try gpu.zeros([2, 3, 9], dtype: .bf16), gate: vec) }
        try expect("rmsNormRoPE grid") { _ = try gpu.rmsNormRoPE(try gpu.zeros([1, 5, 1, 8]), weight: nil, eps: 1e-6, grid: RoPEGrid(frames: 1, height: 2, width: 2)) }
        return "ok (\(seen.count) typed errors: \(seen.joined(separator: ", ")))"
    }
}
