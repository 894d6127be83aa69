import ArgumentParser
import Foundation
import ReelCPU
import ReelCUDA

/// `reel devices`: the GPUs Reel can use and the NVIDIA libraries it found, or why there are none.
struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List the CPU's matrix-multiply path, CUDA GPUs (name, memory, compute capability) and the NVIDIA library versions found.",
        discussion: """
            Libraries are searched in REEL_CUDA_PATH, LD_LIBRARY_PATH, the usual CUDA folders and pip \
            nvidia/*/lib folders. Exits with status 1 when no GPU is usable (the reason is printed). \
            The CPU line says which GEMM the CPU backend's matmul runs (a BLAS found at run time or Reel's own \
            kernel: the faster, timed once at first use; REEL_BLAS=none forces the own kernel).
            """
    )

    @Option(help: "CPU threads the GEMM choice is measured with (default: all cores).")
    var threads: Int?

    func run() throws {
        let cpu = CPUBackend(threads: threads)
        print("CPU: \(cpu.threads) threads; matmul GEMM: \(cpu.gemmDescription)")
        let inv = CUDAInventory.discover()
        if inv.devices.isEmpty {
            print("No CUDA GPU available: \(inv.problem ?? "unknown reason")")
        } else {
            print("CUDA GPUs:")
            for d in inv.devices {
                let gib = Double(d.totalMemory) / Double(1 << 30)
                print("  cuda:\(d.ordinal)  \(d.name)  \(String(format: "%.1f", gib)) GiB  compute capability "
                      + "\(d.computeCapability.major).\(d.computeCapability.minor) (\(d.arch))  \(d.multiprocessors) SMs")
            }
        }
        print("Libraries:")
        for lib in inv.libraries {
            print("  \(lib.name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(lib.found ? lib.status : (inv.devices.isEmpty && lib.name == "CUDA driver" ? "not found (see above)" : lib.status))")
        }
        if inv.devices.isEmpty { throw ExitCode(1) }
    }
}
