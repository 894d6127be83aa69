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
    @Option(help: "CUDA device ordinal of the video decoder (default: the DiT's device, on a stream of its own). A second GPU decodes beside the DiT instead of sharing its device.")
    var decodeDevice: Int?
    @Option(help: "CPU threads (default: all cores).")
    var threads: Int?
    /// Storage dtype of weights and activations.
    enum StorageType: String, ExpressibleByArgument, CaseIterable {
        case f32, bf16, f16
        var dtype: DType { switch self { case .f32: .f32; case .bf16: .bf16; case .f16: .f16 } }
    }

    @Option(help: "Storage dtype of weights and activations (default: f32 on cpu, bf16 on cuda).")
    var dtype: StorageType?

    func validate() throws {
        if let threads, threads <= 0 { throw ValidationError("--threads must be positive, got \(threads).") }
        if device < 0 { throw ValidationError("--device must be 0 or more.") }
        if let decodeDevice {
            if backend != .cuda { throw ValidationError("--decode-device needs --backend cuda.") }
            if decodeDevice < 0 { throw ValidationError("--decode-device must be 0 or more.") }
        }
    }

    /// The decoder's backend when `--decode-device` names another GPU than `--device` (nil: a stream
    /// of the DiT's backend).
    func makeDecodeBackend() throws -> (any Backend)? {
        guard let decodeDevice, decodeDevice != device else { return nil }
        return try CUDABackend(device: decodeDevice, tuning: Self.tuning)
    }

    /// The performance switches, read from the environment here and nowhere else (`Tuning.fromEnvironment`
    /// names the variables; README "Performance switches").
    static let tuning = Tuning.fromEnvironment()

    var storageType: DType { dtype?.dtype ?? (backend == .cuda ? .bf16 : .f32) }

    func make() throws -> any Backend {
        switch backend {
        case .cpu: CPUBackend(threads: threads)
        case .cuda: try CUDABackend(device: device, tuning: Self.tuning)
        }
    }
}
