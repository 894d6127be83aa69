import ArgumentParser
import ReelCore
import ReelCPU
import ReelCUDA

/// Which backend runs the models, and in which storage dtype.
struct BackendOptions: ParsableArguments {
    enum Kind: String, ExpressibleByArgument, CaseIterable { case cpu, cuda }

    @Option(help: "Backend: cpu or cuda.")
    var backend: Kind = .cpu
    @Option(help: "CUDA device ordinal.")
    var device = 0
    @Option(help: "CPU threads (default: all cores).")
    var threads: Int?
    @Option(help: "Storage dtype of weights and activations: f32 or bf16 (default: f32 on cpu, bf16 on cuda).")
    var dtype: String?

    func validate() throws {
        if let threads, threads <= 0 { throw ValidationError("--threads must be positive, got \(threads).") }
        if device < 0 { throw ValidationError("--device must be 0 or more.") }
        if let dtype, !["f32", "bf16", "f16"].contains(dtype) { throw ValidationError("--dtype must be f32, bf16 or f16, got \(dtype).") }
    }

    var storageType: DType { dtype.flatMap(DType.init(rawValue:)) ?? (backend == .cuda ? .bf16 : .f32) }

    func make() throws -> any Backend {
        switch backend {
        case .cpu: CPUBackend(threads: threads)
        case .cuda: try CUDABackend(device: device)
        }
    }
}
