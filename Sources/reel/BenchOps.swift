import ArgumentParser
import Dispatch
import Foundation
import ReelCore
import ReelCPU

/// `reel bench-ops`: times each backend op at representative shapes and prints the achieved rate
/// next to the floor (the time the op would take at the device's peak FLOP/s or memory bandwidth,
/// whichever binds) and the ratio floor / measured.
struct BenchOps: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-ops",
        abstract: "Time every backend op against the hardware's compute and memory floors."
    )

    enum BackendKind: String, ExpressibleByArgument, CaseIterable {
        case cpu
        /// GPU 0, at the 1.3B model's real shapes (BenchOps+CUDA.swift).
        case cuda
    }

    @Option(help: "Backend to measure: \(BackendKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var backend: BackendKind = .cpu

    @Option(help: "Only ops whose name contains this text (e.g. sgemm, attention).")
    var filter: String?

    @Option(help: "Worker threads of the CPU backend (default: active cores).")
    var threads: Int?

    @Option(help: "CPU matrix-multiply path for every op: auto (BLAS when installed), blas, own.")
    var gemm: GEMMPath = .auto

    @Option(help: "Timed repetitions per op (the median is reported).")
    var repeats: Int = 5

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        switch backend {
        case .cpu: try runCPU()
        case .cuda: try CUDABench.run(filter: filter, repeats: max(repeats, 10))
        }
    }

    private func runCPU() throws {
        let cpu = CPUBackend(threads: threads, gemm: gemm)
        let hw = CPUHardware.describe(threads: cpu.threads)
        print("Measuring the CPU's floors...")
        let measuredPeak = CPUHardware.measurePeakFLOPS(threads: cpu.threads)
        let bandwidth = CPUHardware.measureBandwidth(threads: cpu.threads)
        // cpuinfo reports the base clock; under boost the FMA loop runs faster than the
        // specification, so the floor takes whichever is higher.
        let peak = max(hw.specPeakFLOPS, measuredPeak)
        print("""
            CPU: \(hw.model), \(cpu.threads) threads
            peak float32: \(hw.cores) cores x \(hw.simdWidth) lanes x \(hw.fmaUnits) FMA x 2 x \(fmt(hw.clockGHz, 2)) GHz = \
            \(fmt(hw.specPeakFLOPS / 1e9, 1)) GFLOP/s (specification); FMA loop measured \(fmt(measuredPeak / 1e9, 1)) GFLOP/s
            memory: \(fmt(bandwidth / 1e9, 1)) GB/s (parallel 256 MB copy, read + write)
            BLAS: \(BLAS.shared?.path ?? "none (REEL_BLAS=none or not installed)"); ops use --gemm \(gemm.rawValue)
            floor = max(FLOP / \(fmt(peak / 1e9, 1)) GFLOP/s, bytes / \(fmt(bandwidth / 1e9, 1)) GB/s); ratio = floor / time

            """)
        var cases = BenchCase.standard()
        // The own kernel and the BLAS at the 1024^3 reference size, side by side.
        for path in [GEMMPath.own, .blas] where path == .own || BLAS.shared != nil {
            cases.insert(BenchCase.sgemm(1024, path: path, threads: cpu.threads), at: path == .own ? 0 : 1)
        }
        let selected = cases.filter { filter == nil || $0.name.contains(filter!) }
        if selected.isEmpty { throw ValidationError("no op matches --filter \(filter!)") }
        let floor = Floor(flops: peak, bytes: bandwidth)
        try BenchCase.run(selected, on: cpu, floor: floor, repeats: repeats)
    }
}

/// The device's peak rates a measurement is held against.
struct Floor {
    var flops: Double
    var bytes: Double
    func seconds(flops f: Double, bytes b: Double) -> (Double, String) {
        let c = f / flops, m = b / bytes
        return c >= m ? (c, "compute") : (m, "memory")
    }
}

/// One op at one shape: what it costs (FLOP, bytes moved) and how to run it on a backend.
struct BenchCase {
    var name: String
    var shape: String
    var flops: Double
    var bytes: Double
    /// Builds the inputs on a backend and returns the op to time (it ends with a synchronize).
    var prepare: (any Backend) throws -> () throws -> Void
    /// The backend to run on instead of the command's (e.g. the CPU with one GEMM path).
    var backendOverride: (any Backend)?

    static func run(_ cases: [BenchCase], on backend: any Backend, floor: Floor, repeats: Int) throws {
        let header = pad("op", 20) + pad("shape", 34) + lpad("time ms", 10) + lpad("GFLOP/s", 10) + lpad("GB/s", 9)
            + lpad("floor ms", 10) + "  bound    " + lpad("ratio", 6)
        print(header)
        print(String(repeating: "-", count: header.count))
        for c in cases {
            let b = c.backendOverride ?? backend
            let op = try c.prepare(b)
            try op()  // warm-up: first-touch of outputs, BLAS thread start
            var times: [Double] = []
            for _ in 0..<repeats {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try op()
                try b.synchronize()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
            let t = times.sorted()[times.count / 2]
            let (floorSeconds, bound) = floor.seconds(flops: c.flops, bytes: c.bytes)
            print(pad(c.name, 20) + pad(c.shape, 34) + lpad(fmt(t * 1e3, 3), 10)
                  + lpad(c.flops > 0 ? fmt(c.flops / t / 1e9, 1) : "-", 10) + lpad(fmt(c.bytes / t / 1e9, 1), 9)
                  + lpad(fmt(floorSeconds * 1e3, 3), 10) + "  " + pad(bound, 9) + lpad(fmt(floorSeconds / t, 2), 6))
        }
    }

    static func sgemm(_ n: Int, path: GEMMPath, threads: Int) -> BenchCase {
        let size = Double(n)
        return BenchCase(name: "sgemm.\(path.rawValue)", shape: "\(n)x\(n)x\(n)", flops: 2 * size * size * size,
                         bytes: 3 * size * size * 4, prepare: { b in
            let x = try b.randomNormal([n, n], seed: 1, offset: 0, dtype: .f32)
            let y = try b.randomNormal([n, n], seed: 2, offset: 0, dtype: .f32)
            return { _ = try b.matmul(x, y, transposeB: false, bias: nil) }
        }, backendOverride: CPUBackend(threads: threads, gemm: path))
    }

    /// Representative shapes: the DiT's linears and attention at a reduced token count, the VAE's
    /// 3x3x3 convolution, and the elementwise and layout ops at a few million elements.
    static func standard() -> [BenchCase] {
        var cases: [BenchCase] = []
        func add(_ name: String, _ shape: String, flops: Double, bytes: Double,
                 _ prepare: @escaping (any Backend) throws -> () throws -> Void) {
            cases.append(BenchCase(name: name, shape: shape, flops: flops, bytes: bytes, prepare: prepare))
        }
        func randn(_ b: any Backend, _ s: Shape, _ dtype: DType = .f32, seed: UInt64 = 1) throws -> Tensor {
            try b.randomNormal(s, seed: seed, offset: 0, dtype: dtype)
        }
        // Linear [M, K] x [N, K]^T, f32 and bf16 weights.
        for (m, k, n, wdt) in [(1560, 1536, 1536, DType.f32), (1560, 1536, 8960, .f32), (1560, 1536, 1536, .bf16)] {
            let f = 2.0 * Double(m * k * n)
            add("matmul", "\(m)x\(k) . [\(n),\(k)]^T \(wdt)", flops: f, bytes: Double(m * k + m * n) * 4 + Double(n * k * wdt.size)) { b in
                let x = try randn(b, [m, k]), w = try randn(b, [n, k], wdt, seed: 2)
                return { _ = try b.linear(x, weight: w) }
            }
        }
        // Attention: self (DiT-like heads, one block of queries over a window) and cross with bias.
        for (lq, lk, h, d, bias) in [(1560, 4680, 12, 128, false), (512, 512, 16, 64, true), (2048, 2048, 1, 384, false)] {
            let f = 2.0 * Double(lq * lk * h * d) * 2
            let bytes = Double((lq + 2 * lk) * h * d + lq * h * d + (bias ? h * lq * lk : 0)) * 4
            add("attention", "q\(lq) k\(lk) h\(h) d\(d)\(bias ? " +bias" : "")", flops: f, bytes: bytes) { b in
                let q = try randn(b, [1, lq, h, d]), k = try randn(b, [1, lk, h, d], seed: 2), v = try randn(b, [1, lk, h, d], seed: 3)
                let bt = bias ? try randn(b, [h, lq, lk], seed: 4) : nil
                return { _ = try b.attention(query: q, key: k, value: v, scale: 1 / Float(d).squareRoot(), bias: bt) }
            }
        }
        // Convolutions: the VAE's 3x3x3 causal conv at a reduced size, and a 1x1x1.
        do {
            let (t, hh, ww, c) = (4, 30, 52, 96)
            let voxels: Int = t * hh * ww
            let f = 2.0 * Double(voxels * c * c * 27)
            let bytes3: Double = Double(2 * voxels * c + 27 * c * c) * 4
            add("conv3d", "[1,\(t),\(hh),\(ww),\(c)] k3 \(c)->\(c)", flops: f, bytes: bytes3) { b in
                let x = try randn(b, [1, t, hh, ww, c]), w = try randn(b, [c, 3, 3, 3, c], seed: 2)
                return { _ = try b.conv3d(x, weight: w, bias: nil, stride: (1, 1, 1), padding: .causal(t: 2, hw: 1)) }
            }
            let f1 = 2.0 * Double(voxels * c * 2 * c)
            let bytes1: Double = Double(3 * voxels * c + 2 * c * c) * 4
            add("conv3d", "[1,\(t),\(hh),\(ww),\(c)] k1 \(c)->\(2 * c)", flops: f1, bytes: bytes1) { b in
                let x = try randn(b, [1, t, hh, ww, c]), w = try randn(b, [2 * c, 1, 1, 1, c], seed: 2)
                return { _ = try b.conv3d(x, weight: w, bias: nil, stride: (1, 1, 1), padding: ConvPadding()) }
            }
        }
        // Row-wise ops over [4680, 1536]: one read and one write.
        let rows = 4680, cols = 1536, n = rows * cols
        let rw = Double(2 * n * 4)
        let shape2 = "[\(rows),\(cols)]"
        add("layerNorm", shape2, flops: 0, bytes: rw) { b in
            let x = try randn(b, [rows, cols])
            return { _ = try b.layerNorm(x, weight: nil, bias: nil, eps: 1e-6) }
        }
        add("rmsNorm", shape2, flops: 0, bytes: rw) { b in
            let x = try randn(b, [rows, cols]), w = try randn(b, [cols], seed: 2)
            return { _ = try b.rmsNorm(x, weight: w, eps: 1e-6) }
        }
        add("l2Norm", shape2, flops: 0, bytes: rw) { b in
            let x = try randn(b, [rows, cols])
            return { _ = try b.l2Norm(x, weight: nil, scale: 39, eps: 1e-12) }
        }
        add("softmax", shape2, flops: 0, bytes: rw) { b in
            let x = try randn(b, [rows, cols])
            return { _ = try b.softmax(x) }
        }
        add("rope3d", "[1,4680,12,128] 3x30x52", flops: 0, bytes: Double(2 * 4680 * 12 * 128 * 4)) { b in
            let x = try randn(b, [1, 4680, 12, 128])
            return { _ = try b.rope3d(x, grid: RoPEGrid(frames: 3, height: 30, width: 52, frameOffset: 9)) }
        }
        for op in [UnaryOp.silu, .geluTanh, .exp] {
            add("unary.\(op)", shape2, flops: 0, bytes: rw) { b in
                let x = try randn(b, [rows, cols])
                return { _ = try b.unary(op, x) }
            }
        }
        add("binary.add", shape2 + " + same", flops: 0, bytes: Double(3 * n * 4)) { b in
            let x = try randn(b, [rows, cols]), y = try randn(b, [rows, cols], seed: 2)
            return { _ = try b.add(x, y) }
        }
        add("binary.mul", shape2 + " * [\(cols)]", flops: 0, bytes: rw) { b in
            let x = try randn(b, [rows, cols]), y = try randn(b, [cols], seed: 2)
            return { _ = try b.mul(x, y) }
        }
        add("axpby", shape2, flops: 0, bytes: Double(3 * n * 4)) { b in
            let x = try randn(b, [rows, cols]), y = try randn(b, [rows, cols], seed: 2)
            return { _ = try b.axpby(0.4, x, 0.6, y) }
        }
        add("modulate", "[3,1560,1536] by [3,1,1536]", flops: 0, bytes: rw) { b in
            let x = try randn(b, [3, 1560, cols]), s = try randn(b, [3, 1, cols], seed: 2), h = try randn(b, [3, 1, cols], seed: 3)
            return { _ = try b.modulate(x, scale: s, shift: h) }
        }
        add("upsampleNearest", "[4,60,104,96] x2", flops: 0, bytes: Double(4 * 60 * 104 * 96 * 4 * 5)) { b in
            let x = try randn(b, [4, 60, 104, 96])
            return { _ = try b.upsampleNearest(x, scaleH: 2, scaleW: 2) }
        }
        add("permute", "[1,4680,12,128] -> 0,2,1,3", flops: 0, bytes: Double(2 * 4680 * 12 * 128 * 4)) { b in
            let x = try randn(b, [1, 4680, 12, 128])
            return { _ = try b.permute(x, [0, 2, 1, 3]) }
        }
        add("concat", "2 x [4680,768] axis 1", flops: 0, bytes: rw) { b in
            let x = try randn(b, [rows, cols / 2]), y = try randn(b, [rows, cols / 2], seed: 2)
            return { _ = try b.concat([x, y], axis: 1) }
        }
        add("cast", shape2 + " bf16->f32", flops: 0, bytes: Double(n * 6)) { b in
            let x = try randn(b, [rows, cols], .bf16)
            return { _ = try b.cast(x, to: .f32) }
        }
        add("embedding", "512 ids of [32000,1536]", flops: 0, bytes: Double(2 * 512 * cols * 4)) { b in
            let table = try randn(b, [32000, cols])
            let ids = try b.tensor((0..<512).map { Int32($0 * 61 % 32000) }, shape: [512])
            return { _ = try b.embedding(ids, table: table) }
        }
        add("randomNormal", "[3,16,60,104]", flops: 0, bytes: Double(3 * 16 * 60 * 104 * 4)) { b in
            { _ = try b.randomNormal([3, 16, 60, 104], seed: 5, offset: 0, dtype: .f32) }
        }
        return cases
    }
}

private func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }
private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
private func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }

extension GEMMPath: ExpressibleByArgument {}
