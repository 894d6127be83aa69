import ArgumentParser
import Dispatch
import Foundation
import ReelCore
import ReelCPU

/// `reel bench-ops`: the op case list (OpCases/) in perf mode: times each op at representative shapes
/// on one backend and prints the achieved rate next to the floor (the time the op would take at the
/// device's peak FLOP/s or memory bandwidth, whichever binds) and the ratio floor / measured.
struct BenchOps: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-ops",
        abstract: "Time every backend op against the hardware's compute and memory floors."
    )

    @Option(help: "Backend to measure: \(OpBackend.allCases.map(\.rawValue).joined(separator: ", ")).")
    var backend: OpBackend = .cpu

    @Option(help: "Only ops whose name or shape contains this text (e.g. sgemm, attention).")
    var filter: String?

    @Option(help: "Worker threads of the CPU backend (default: active cores).")
    var threads: Int?

    @Option(help: "CPU matrix-multiply path for every op: auto (BLAS when installed), blas, own.")
    var gemm: GEMMPath = .auto

    @Option(help: "Timed repetitions per op (the median is reported).")
    var repeats: Int = 5

    @Flag(help: "Print the cases (op, shape, FLOP, bytes) without running them.")
    var list = false

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        let selected = OpCaseList.all(blas: backend == .cpu && BLAS.shared != nil)
            .filter { $0.runs(in: .perf(backend)) && $0.matches(filter) }
        if selected.isEmpty { throw ValidationError("no \(backend) op case matches --filter \(filter ?? "")") }
        if list {
            for c in selected {
                print(Column.left(c.op, 20) + Column.left(c.vars, 46) + Column.right(fmt(c.flops / 1e9, 1), 10) + " GFLOP"
                      + Column.right(fmt(c.bytes / 1e6, 1), 10) + " MB")
            }
            print("bench-ops: \(selected.count) \(backend) op cases")
            return
        }
        switch backend {
        case .cpu: try runCPU(selected)
        case .cuda: try CUDABench.run(selected, repeats: max(repeats, 10))
        }
    }

    private func runCPU(_ selected: [OpCase]) throws {
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
        let floor = Floor(flops: peak, bytes: bandwidth)
        let header = Column.left("op", 20) + Column.left("shape", 34) + Column.right("time ms", 10) + Column.right("GFLOP/s", 10)
            + Column.right("GB/s", 9) + Column.right("floor ms", 10) + "  bound    " + Column.right("ratio", 6)
        print(header)
        print(String(repeating: "-", count: header.count))
        for c in selected {
            let t = try time(c, on: c.backend?(cpu) ?? cpu)
            let (floorSeconds, bound) = floor.seconds(flops: c.flops, bytes: c.bytes)
            print(Column.left(c.op, 20) + Column.left(c.vars, 34) + Column.right(fmt(t * 1e3, 3), 10)
                  + Column.right(c.flops > 0 ? fmt(c.flops / t / 1e9, 1) : "-", 10) + Column.right(fmt(c.bytes / t / 1e9, 1), 9)
                  + Column.right(fmt(floorSeconds * 1e3, 3), 10) + "  " + Column.left(bound, 9) + Column.right(fmt(floorSeconds / t, 2), 6))
        }
    }

    /// Median wall time of `repeats` runs after one warm-up (first touch of outputs, BLAS thread start).
    private func time(_ c: OpCase, on b: any Backend) throws -> Double {
        let op = try c.build(b, try c.perfInputs(on: b))
        _ = try op()
        var times: [Double] = []
        for _ in 0..<repeats {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try op()
            try b.synchronize()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return times.sorted()[times.count / 2]
    }
}

/// The device's peak rates a measurement is held against.
struct Floor {
    var flops: Double
    var bytes: Double
    /// The time at the binding rate, and which one binds ("compute" or "memory").
    func seconds(flops f: Double, bytes b: Double) -> (Double, String) {
        let c = f / flops, m = b / bytes
        return c >= m ? (c, "compute") : (m, "memory")
    }
}

private func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }

extension GEMMPath: ExpressibleByArgument {}
extension OpBackend: ExpressibleByArgument {}

