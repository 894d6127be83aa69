import ArgumentParser
import Foundation
import ReelCore
import ReelCPU
import ReelCUDA

/// `reel check-ops`: the op case list (OpCases/) in check mode: every backend op on random inputs at
/// several shapes, CUDA against the CPU backend (the oracle), by normalized error
/// nmse = sum((cuda - cpu)^2) / sum(cpu^2) against a per-op, per-dtype tolerance; plus checks of what is
/// not an op (exact noise, graphs, streams, the allocator's steady state, typed errors;
/// CheckOps+Runtime.swift). Exits non-zero on any failure.
struct CheckOps: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-ops",
        abstract: "Check every CUDA op against the CPU backend on random inputs (needs a GPU)."
    )

    @Option(help: "Only checks whose op or case name contains this text (e.g. attention, bf16).")
    var filter: String?

    @Option(help: "CUDA device ordinal.")
    var device: Int = 0

    @Flag(help: "Print the cases (op, case, dtype, tolerance) without running them (needs no GPU).")
    var list = false

    func validate() throws {
        if device < 0 { throw ValidationError("--device must be >= 0") }
    }

    func run() throws {
        // Seeds follow the position in this selection: an unfiltered run draws the same inputs every time.
        let cudnn = (try? CUDALibraries.cudnn()) != nil
        var selected = OpCaseList.all(cudnn: cudnn).filter { $0.runs(in: .check) && $0.matches(filter) }
        let runtime = RuntimeCheck.all.filter { name, _ in
            // All of them for "runtime", else those named by the filter.
            guard let filter else { return true }
            return "runtime".contains(filter) || filter.hasPrefix("runtime") || name.contains(filter)
        }
        if list {
            printList(selected, runtime: runtime.map(\.0), cudnn: cudnn)
            return
        }
        let gpu = try CUDABackend(device: device, tuning: BackendOptions.tuning)
        let cpu = CPUBackend()
        let info = gpu.cudaDevice.info
        print("check-ops: \(gpu.name) \(info.name) (\(info.arch)) against the CPU backend (\(cpu.threads) threads)")
        // Cases for another architecture (the Hopper kernel's) come last: dropping them leaves every other case's inputs
        // as they were.
        let otherArch = selected.filter { $0.arch.map { $0 != info.arch } ?? false }
        if !otherArch.isEmpty {
            print("(\(otherArch.count) cases for \(Set(otherArch.compactMap(\.arch)).sorted().joined(separator: ", ")) skipped on \(info.arch))")
            selected.removeAll { $0.arch.map { $0 != info.arch } ?? false }
        }
        let header = Column.left("op", 16) + Column.left("case", 44) + Column.left("dtype", 6) + Column.right("nmse", 11)
            + Column.right("tolerance", 11) + "  result"
        print(header)
        print(String(repeating: "-", count: header.count))
        var failures: [String] = []
        var counts: [String: (Int, Int)] = [:]
        for (index, c) in selected.enumerated() {
            var result = "ok"
            var nmseText = "-"
            do {
                let e = try c.compare(gpu: gpu, cpu: cpu, seed: UInt64(index + 1))
                nmseText = String(format: "%.2e", e)
                if let tolerance = c.tolerance, !(e <= tolerance) { result = "FAIL" }
            } catch {
                result = "FAIL: \(error)"
            }
            if result != "ok" { failures.append("\(c.op) \(c.vars) \(c.dtype)") }
            counts[c.op, default: (0, 0)].0 += 1
            if result == "ok" { counts[c.op, default: (0, 0)].1 += 1 }
            print(Column.left(c.op, 16) + Column.left(c.vars, 44) + Column.left(c.dtype.rawValue, 6) + Column.right(nmseText, 11)
                  + Column.right(String(format: "%.0e", c.tolerance ?? Double.nan), 11) + "  " + result)
        }
        if !runtime.isEmpty {
            print("")
            for (name, check) in runtime {
                var line = "ok"
                do { line = try check(gpu, cpu) } catch { line = "FAIL: \(error)" }
                if line.hasPrefix("FAIL") { failures.append("runtime \(name)") }
                print(Column.left("runtime", 16) + Column.left(name, 44) + line)
            }
        }
        let stats = gpu.cudaDevice.allocatorStats
        print("")
        for r in gpu.cudnnRefusals { print("cuDNN refused (own kernel used): \(r)") }
        print("ops: " + counts.keys.sorted().map { "\($0) \(counts[$0]!.1)/\(counts[$0]!.0)" }.joined(separator: ", "))
        print("device memory: peak \(stats.peak >> 20) MiB in tensors, \(stats.driverAllocations) cuMemAlloc calls, "
              + "\(gpu.cudaDevice.kernelCompiles) kernel files compiled by NVRTC (the rest from the disk cache)")
        if failures.isEmpty {
            print("check-ops: all \(selected.count) op checks passed")
        } else {
            print("check-ops: \(failures.count) FAILED: \(failures.joined(separator: "; "))")
            throw ExitCode(1)
        }
    }

    private func printList(_ cases: [OpCase], runtime: [String], cudnn: Bool) {
        let header = Column.left("op", 16) + Column.left("case", 44) + Column.left("dtype", 6) + Column.right("tolerance", 11)
        print(header)
        print(String(repeating: "-", count: header.count))
        for c in cases {
            print(Column.left(c.op, 16) + Column.left(c.vars, 44) + Column.left(c.dtype.rawValue, 6)
                  + Column.right(String(format: "%.0e", c.tolerance ?? Double.nan), 11))
        }
        for name in runtime { print(Column.left("runtime", 16) + name) }
        print("check-ops: \(cases.count) op checks, \(runtime.count) runtime checks"
              + (cudnn ? "" : " (cuDNN not found: its forced-path cases left out)"))
    }
}
