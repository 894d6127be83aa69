import Foundation
import ReelCore
import ReelCUDA

/// `reel bench-ops --backend cuda`: the op cases timed on the GPU (at the shapes the Wan2.1 1.3B model
/// runs: 480x832, 3 latent frames per block = 4680 tokens, a window of 18720 keys; REFERENCE.md
/// sections 1 and 5), with CUDA events (median), against a floor made of two measured ceilings: the
/// bf16 GEMM rate of an 8192^3 cuBLASLt product (the list's first "gemm" case) and the device-to-device
/// copy rate.
enum CUDABench {
    static func run(_ selected: [OpCase], repeats: Int, device ordinal: Int = 0) throws {
        let gpu = try CUDABackend(device: ordinal, tuning: BackendOptions.tuning)
        let info = gpu.cudaDevice.info
        print("bench-ops: \(gpu.name) \(info.name) (\(info.arch), \(info.multiprocessors) SMs), bf16 storage, fp32 accumulation")
        // The two ceilings, measured first.
        guard let gemmRef = OpCaseList.all().first(where: { $0.runs(in: .perf(.cuda)) && $0.op == "gemm" }) else {
            throw ReelError.input("bench-ops: the case list has no CUDA gemm case to measure the compute ceiling")
        }
        let peakFlops = gemmRef.flops / (try time(gemmRef, on: gpu, repeats: max(repeats, 10)))
        let copyCase = copy(bytes: 1 << 30)
        let bandwidth = copyCase.bytes / (try time(copyCase, on: gpu, repeats: max(repeats, 10)))
        let floor = Floor(flops: peakFlops, bytes: bandwidth)
        print(String(format: "ceilings: bf16 GEMM 8192^3 %.0f TFLOP/s, device copy %.2f TB/s (read + write)",
                     peakFlops / 1e12, bandwidth / 1e12))
        print("floor = max(FLOP / GEMM rate, bytes / copy rate); ratio = floor / time (1.0 = at the ceiling)\n")
        let header = Column.left("op", 18) + Column.left("shape", 46) + Column.right("time ms", 10) + Column.right("TFLOP/s", 9)
            + Column.right("GB/s", 8) + Column.right("floor ms", 10) + "  bound   " + Column.right("ratio", 6)
        print(header)
        print(String(repeating: "-", count: header.count))
        for c in selected {
            let t: Double
            do { t = try time(c, on: gpu, repeats: repeats) } catch {
                print(Column.left(c.op, 18) + Column.left(c.vars, 46) + "  FAILED: \(error)")
                continue
            }
            let (floorSeconds, bound) = floor.seconds(flops: c.flops, bytes: c.bytes)
            print(Column.left(c.op, 18) + Column.left(c.vars, 46) + Column.right(String(format: "%.3f", t * 1e3), 10)
                  + Column.right(c.flops > 0 ? String(format: "%.1f", c.flops / t / 1e12) : "-", 9)
                  + Column.right(String(format: "%.0f", c.bytes / t / 1e9), 8)
                  + Column.right(String(format: "%.3f", floorSeconds * 1e3), 10) + "  " + Column.left(bound, 8)
                  + Column.right(String(format: "%.2f", floorSeconds / t), 6))
        }
        for r in gpu.cudnnRefusals { print("cuDNN refused (own kernel used): \(r)") }
        let s = gpu.cudaDevice.allocatorStats
        print("\npeak device memory in tensors: \(s.peak >> 20) MiB; cuMemAlloc calls: \(s.driverAllocations)")
    }

    /// Median of `repeats` event-timed samples after two warm-ups (kernel compile, GEMM choice).
    /// Each sample times enough back-to-back runs to fill ~2 ms, so the host's launch cost overlaps
    /// the GPU's work instead of showing up as idle time between the events.
    static func time(_ c: OpCase, on gpu: CUDABackend, repeats: Int) throws -> Double {
        let op = try c.build(gpu, try c.perfInputs(on: gpu))
        _ = try op(); _ = try op()
        try gpu.synchronize()
        func sample(_ inner: Int) throws -> Double {
            let start = try gpu.record(timing: true)
            for _ in 0..<inner { _ = try op() }
            let end = try gpu.record(timing: true)
            return try gpu.elapsedMilliseconds(from: start, to: end) / 1e3 / Double(inner)
        }
        let inner = max(1, min(50, Int(2e-3 / max(try sample(1), 1e-7))))
        var times: [Double] = []
        for _ in 0..<repeats { times.append(try sample(inner)) }
        return times.sorted()[times.count / 2]
    }

    /// The copy ceiling: a bf16 cast to bf16 of `bytes` (one read, one write), in the cases' vocabulary.
    static func copy(bytes: Int) -> OpCase {
        OpCase(op: "copy", vars: "\(bytes >> 20) MiB device to device", dtype: .bf16, inputs: [InputSpec(shape: [bytes / 2], dtype: .bf16)],
               timedOn: [.cuda], bytes: 2 * Double(bytes), build: { b, t in { try b.cast(t[0], to: .bf16) } })
    }
}
