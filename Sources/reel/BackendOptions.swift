import ArgumentParser
import Foundation
import ReelCore
import ReelCPU
import ReelCUDA
import ReelModels
import ReelPipeline

/// Which backend runs the models, and in which storage dtype.
struct BackendOptions: ParsableArguments {
    enum Kind: String, ExpressibleByArgument, CaseIterable { case cpu, cuda }

    @Option(help: "Backend: cpu or cuda.")
    var backend: Kind = .cpu
    @Option(help: "CUDA device ordinal.")
    var device = 0
    @Option(help: ArgumentHelp(
        "Device ordinal of the video decoder (default: the DiT's device, on a stream of its own). A second GPU decodes "
            + "beside the DiT instead of sharing its device. With --backend cpu: an in-process CPU device (for checks).",
        valueName: "ordinal"))
    var decodeDevice: Int?
    @Option(help: ArgumentHelp(
        "Device ordinal of the input encoder (video and image inputs: --input, --image, --continue, the server's input "
            + "sessions; default: the decoder's device, on a stream of its own). With --backend cpu: an in-process CPU device.",
        discussion: "The encoded latents reach the DiT's device ordered by an event, as the decoder's do. docs/multi-gpu.md",
        valueName: "ordinal"))
    var encodeDevice: Int?
    @Option(help: ArgumentHelp(
        "Device ordinal of the umT5 text encoder (default: the DiT's device, or the CPU with --text-backend cpu). "
            + "With --backend cpu: an in-process CPU device.",
        discussion: "A prompt's embedding is copied to the DiT's device once per new prompt. docs/multi-gpu.md",
        valueName: "ordinal"))
    var textDevice: Int?
    @Option(help: ArgumentHelp("Where the umT5 text encoder runs: cpu or cuda (default: --backend).",
                               discussion: "--text-backend cpu beside --backend cuda keeps umT5 off the GPU (umT5-XXL: 11 GB in bf16); a prompt not seen before then takes seconds to encode (printed), once per prompt."))
    var textBackend: Kind?
    @Option(help: "CPU threads (default: all cores).")
    var threads: Int?
    @Option(help: ArgumentHelp(
        "Spread the DiT over these devices by --parallelism (default: sequence, Ulysses), e.g. 0,1: CUDA GPUs through NCCL, "
            + "or with --backend cpu that many in-process CPU devices (for checks). The first is the DiT's main device. "
            + "With --pipeline timestep-forcing: one device per denoising step instead.",
        discussion: "The attention heads (12 for Wan 1.3B, 40 for 14B) must divide by the count. docs/multi-gpu.md"),
            transform: { try DeviceList(parsing: $0) })
    var devices: DeviceList?
    /// How the DiT is spread over `--devices` with the exact schedule.
    enum ParallelismKind: String, ExpressibleByArgument, CaseIterable {
        case sequence, tensor
        var scheme: DiTParallelScheme { self == .sequence ? .sequence : .tensor }
    }
    @Option(help: ArgumentHelp(
        "With --devices: sequence (Ulysses: all the weights on every device, 1/N of the tokens; default) or tensor "
            + "(Megatron: 1/N of the heads and FFN units, so 1/N of the blocks' weights, on every device).",
        discussion: "Both split the KV cache by heads. tensor needs the FFN's hidden units (8960 for 1.3B, 13824 for "
            + "14B) to divide by the device count too; it refuses --fp8/--int8. docs/multi-gpu.md"))
    var parallelism: ParallelismKind = .sequence
    /// How the DiT's work is spread over `--devices`.
    enum PipelineKind: String, ExpressibleByArgument, CaseIterable {
        /// LongLive's exact schedule (the DiT spread by sequence parallelism where --devices is given).
        case exact
        /// LiveAvatar's timestep-forcing pipeline: a whole DiT per device, device i always runs step i.
        case timestepForcing = "timestep-forcing"
        /// StreamDiffusionV2's block pipelining: the DiT's layers in contiguous ranges over the devices, the stream
        /// batch handed from device to device (`reel bench` only for now).
        case blockPipeline = "block-pipeline"
    }
    @Option(help: ArgumentHelp(
        "exact (LongLive's schedule; default) or timestep-forcing (LiveAvatar's pipeline: a whole DiT and KV cache per "
            + "device of --devices, device i always runs denoising step i; an approximation, docs/multi-gpu.md), or "
            + "block-pipeline (StreamDiffusionV2's: the DiT's layers split over --devices, video-to-video; reel bench only for now).",
        discussion: "timestep-forcing needs one device per step: --devices 0,1,2,3 for LongLive's 4 steps; the "
            + "decoder goes on --decode-device (default: a stream of the first device)."))
    var pipeline: PipelineKind = .exact
    /// Storage dtype of weights and activations.
    enum StorageType: String, ExpressibleByArgument, CaseIterable {
        case f32, bf16, f16
        var dtype: DType { switch self { case .f32: .f32; case .bf16: .bf16; case .f16: .f16 } }
    }

    @Option(help: "Storage dtype of weights and activations (default: f32 on cpu, bf16 on cuda).")
    var dtype: StorageType?

    @Option(help: "With --gpu-memory: device slots that streamed DiT blocks pass through (2: one uploads while one computes; 3 hides slower uploads).")
    var streamSlots = 2

    @Option(name: .customLong("gpu-memory"), help: ArgumentHelp(
        "Cap Reel's device memory at this many GB (10^9 bytes) on each GPU it uses (with --backend cpu: the memory "
            + "its tensors hold, for checks).",
        discussion: "DiT layers that do not fit stream from page-locked host memory on a copy stream; the text encoder "
            + "moves to the CPU when the GPU cannot hold it. A request that cannot fit is refused with the memory it "
            + "needs. `reel inspect DIR --gpu-memory GB` prints the plan. docs/memory.md", valueName: "GB"))
    var gpuMemory: Double?

    @Option(name: .customLong("host-memory"), help: ArgumentHelp(
        "With --gpu-memory: host memory (GB) the streamed DiT blocks' page-locked copies may take (default: "
            + "MemAvailable of /proc/meminfo, or REEL_HOST_MEMORY_GB).",
        discussion: "When the copies would not fit, the blocks stream from the memory-mapped weight file through a "
            + "page-locked bounce buffer per slot (the file must store them in the run's dtype). docs/memory.md",
        valueName: "GB"))
    var hostMemory: Double?

    @Option(name: .customLong("gpu-memory-reserve"), help: ArgumentHelp(
        "With --gpu-memory: GB of the cap the placement leaves free for what its estimate does not count "
            + "(default: 5% of the cap).",
        discussion: "The estimate is within a few percent of measured peaks on an H100; the reserve keeps the "
            + "plan from filling the cap to its last byte. The cap itself still stops allocations at --gpu-memory. "
            + "docs/memory.md", valueName: "GB"))
    var gpuMemoryReserve: Double?

    /// `--gpu-memory` in bytes, nil without it.
    var memoryCap: Int? { gpuMemory.map { Int($0 * 1e9) } }

    /// The fraction of the cap kept back from the placement when `--gpu-memory-reserve` is not given.
    static let defaultReserveFraction = 0.05

    /// `--gpu-memory-reserve` in bytes (default: `defaultReserveFraction` of the cap); 0 without a cap.
    var memoryReserve: Int {
        guard let memoryCap else { return 0 }
        return gpuMemoryReserve.map { Int($0 * 1e9) } ?? Int(Double(memoryCap) * Self.defaultReserveFraction)
    }

    func validate() throws {
        if let threads, threads <= 0 { throw ValidationError("--threads must be positive, got \(threads).") }
        if device < 0 { throw ValidationError("--device must be 0 or more.") }
        if let devices, device != 0, device != devices.ordinals[0] {
            throw ValidationError("--device \(device) and --devices \(devices) disagree: the DiT's main device is "
                                  + "the first of --devices.")
        }
        if parallelism == .tensor && devices == nil {
            throw ValidationError("--parallelism tensor spreads the DiT over --devices: give --devices too.")
        }
        if parallelism == .tensor && pipeline != .exact {
            throw ValidationError("--parallelism tensor is for the exact schedule; --pipeline \(pipeline.rawValue) "
                                  + "places whole models (or layer ranges) on the devices instead.")
        }
        if !(1...4).contains(streamSlots) { throw ValidationError("--stream-slots must be 1 to 4, got \(streamSlots).") }
        if let gpuMemory, !(gpuMemory > 0) { throw ValidationError("--gpu-memory must be a positive number of GB.") }
        if let hostMemory, !(hostMemory >= 0) { throw ValidationError("--host-memory must be 0 or more GB.") }
        if let gpuMemoryReserve {
            guard let gpuMemory else { throw ValidationError("--gpu-memory-reserve needs --gpu-memory.") }
            if !(gpuMemoryReserve >= 0 && gpuMemoryReserve < gpuMemory) {
                throw ValidationError("--gpu-memory-reserve must be 0 or more GB and less than --gpu-memory (\(gpuMemory) GB).")
            }
        }
        if textBackend == .cuda && backend == .cpu { throw ValidationError("--text-backend cuda needs --backend cuda.") }
        if pipeline == .blockPipeline && devices == nil {
            throw ValidationError("--pipeline block-pipeline splits the DiT's layers over devices: name them, e.g. --devices 0,1.")
        }
        if pipeline == .timestepForcing && devices == nil {
            throw ValidationError("--pipeline timestep-forcing runs a DiT per denoising step: name the devices, "
                                  + "e.g. --devices 0,1,2,3 for LongLive's 4 steps.")
        }
        for (option, ordinal) in [("--decode-device", decodeDevice), ("--encode-device", encodeDevice),
                                  ("--text-device", textDevice)] {
            if let ordinal, ordinal < 0 { throw ValidationError("\(option) must be 0 or more, got \(ordinal).") }
        }
        if let textDevice, textBackend == .cpu, backend == .cuda {
            throw ValidationError("--text-device \(textDevice) puts umT5 on cuda:\(textDevice) and --text-backend cpu on "
                                  + "the CPU: give one of them.")
        }
        if pipeline != .exact, encodeDevice != nil {
            throw ValidationError("--encode-device places the input encoder, which --pipeline \(pipeline.rawValue) does "
                                  + "not take (no video or image input).")
        }
    }

    /// The DiT's main device: the first of `--devices`, else `--device`.
    var mainDevice: Int { devices?.ordinals[0] ?? device }

    /// The decoder's backend when `--decode-device` names another device than the DiT's (nil: a stream
    /// of the DiT's backend).
    func makeDecodeBackend() throws -> (any Backend)? {
        guard let decodeDevice, decodeDevice != mainDevice else { return nil }
        return try makePlacedBackend(decodeDevice, option: "--decode-device")
    }

    /// The input encoder's backend for `--encode-device` (nil: a stream of its own on the decoder's device, the
    /// default, also when it names that device); `dit` is the DiT's backend, whose device a new stream serves
    /// when `--encode-device` names it while the decoder is elsewhere.
    func makeEncodeBackend(beside dit: any Backend) throws -> (any Backend)? {
        guard let encodeDevice, encodeDevice != (decodeDevice ?? mainDevice) else { return nil }
        if encodeDevice == mainDevice { return try dit.makeStream() }
        return try makePlacedBackend(encodeDevice, option: "--encode-device")
    }

    /// The text encoder's backend: `--text-device`'s when it names another device than the DiT's, the CPU when
    /// `--text-backend` differs from `--backend` (nil: the DiT's).
    func makeTextBackend() throws -> (any Backend)? {
        if let textDevice {
            return textDevice == mainDevice ? nil : try makePlacedBackend(textDevice, option: "--text-device")
        }
        guard let textBackend, textBackend != backend else { return nil }
        return CPUBackend(threads: threads)
    }

    /// A stream on device `ordinal` for a placement option (`--decode-device`, `--encode-device`, `--text-device`):
    /// a GPU under `--gpu-memory`, or with `--backend cpu` the in-process CPU device of that ordinal (one per
    /// process, so that two options naming it share it).
    private func makePlacedBackend(_ ordinal: Int, option: String) throws -> any Backend {
        switch backend {
        case .cpu:
            return CPUBackend(threads: threads, device: CPUDeviceCache.shared.device(ordinal))
        case .cuda:
            do {
                try capDevice(ordinal)
                return try CUDABackend(device: ordinal, tuning: Self.tuning)
            } catch let error as ReelError {
                throw ReelError.input("\(option) \(ordinal): \(error)")
            }
        }
    }

    /// `--gpu-memory`'s placement of a model folder made for videos of `geometry` (nil without a cap): the text
    /// encoder and streamed DiT blocks' weights go to a CPU backend of `--threads` (docs/memory.md).
    func residency(geometry: BlockGeometry) -> Residency? {
        let environment = ProcessInfo.processInfo.environment["REEL_HOST_MEMORY_GB"].flatMap(Double.init)
        let host = (hostMemory ?? environment).map { Int($0 * 1e9) } ?? Residency.availableHostMemory()
        return memoryCap.map {
            Residency(cap: $0, slots: streamSlots, geometry: geometry, host: CPUBackend(threads: threads),
                      reserve: memoryReserve, hostMemory: host)
        }
    }

    /// The performance switches, read from the environment here and nowhere else (`Tuning.fromEnvironment`
    /// names the variables; README "Performance switches").
    static let tuning = Tuning.fromEnvironment()

    var storageType: DType { dtype?.dtype ?? (backend == .cuda ? .bf16 : .f32) }

    func make() throws -> any Backend {
        if pipeline == .blockPipeline {
            throw ReelError.input("--pipeline block-pipeline runs only in `reel bench` for now (random weights, DiT only; docs/multi-gpu.md)")
        }
        if let stages = try makeStageBackends() { return stages[0] }
        if let communicator = try makeCommunicator() {
            if backend == .cuda { for d in devices?.ordinals ?? [] { try capDevice(d) } }
            return communicator.streams[0]
        }
        switch backend {
        case .cpu: return CPUBackend(threads: threads, memoryBudget: memoryCap.map { MemoryBudget(cap: $0, device: "cpu") })
        case .cuda:
            try capDevice(device)
            return try CUDABackend(device: device, tuning: Self.tuning)
        }
    }

    /// Runs `body` with `backend`'s cap lifted, then sets `--gpu-memory` again: `reel bench` builds its random
    /// weights on the device before placing them under the cap (a model folder loads the same way: docs/memory.md).
    func withoutCap<T>(on backend: any Backend, _ body: () throws -> T) throws -> T {
        guard let memoryCap else { return try body() }
        let cuda = (backend as? CUDABackend)?.cudaDevice, cpu = (backend as? CPUBackend)?.memoryBudget
        cuda?.setMemoryCap(nil)
        cpu?.cap = Int.max / 2
        defer {
            cuda?.setMemoryCap(memoryCap)
            cpu?.cap = memoryCap
        }
        return try body()
    }

    /// Sets `--gpu-memory` on GPU `ordinal` (no cap without it).
    private func capDevice(_ ordinal: Int) throws {
        guard let memoryCap else { return }
        try CUDADevice.open(ordinal).setMemoryCap(memoryCap)
    }

    /// An engine's devices for `reel serve --session-devices`: a stream of the one device of a group of one, else a
    /// communicator over the group's devices (its rank 0's stream is the engine's backend; the DiT is spread over its
    /// ranks), each GPU under `--gpu-memory`.
    func makeEngineDevices(_ ordinals: [Int]) throws -> (backend: any Backend, communicator: (any Communicator)?) {
        let streams: [any Backend]
        switch backend {
        case .cpu:
            streams = ordinals.map { CPUBackend(threads: threads, device: CPUDeviceCache.shared.device($0)) }
        case .cuda:
            for d in ordinals { try capDevice(d) }
            if ordinals.count > 1 {
                let communicator = try NCCLCommunicator(devices: ordinals, tuning: Self.tuning)
                return (communicator.streams[0], communicator)
            }
            streams = [try CUDABackend(device: ordinals[0], tuning: Self.tuning)]
        }
        guard streams.count > 1 else { return (streams[0], nil) }
        let communicator = try CPUCommunicator(streams: streams)
        return (streams[0], communicator)
    }

    /// The ranks of `--devices` (made once: `make()` returns its rank 0's stream), or nil without it.
    func makeCommunicator() throws -> (any Communicator)? {
        guard let devices, pipeline == .exact else { return nil }
        return try CommunicatorCache.shared.communicator(for: devices.ordinals, backend: backend, threads: threads)
    }

    /// The streams of `--pipeline timestep-forcing`, one per device of `--devices` (made once: `make()` returns the
    /// first), or nil for the exact schedule.
    func makeStageBackends() throws -> [any Backend]? {
        guard let devices, pipeline == .timestepForcing else { return nil }
        return try makeDeviceStreams(devices)
    }

    /// The streams of `--pipeline block-pipeline`, one per device of `--devices`, or nil for another pipeline.
    func makeBlockPipelineBackends() throws -> [any Backend]? {
        guard let devices, pipeline == .blockPipeline else { return nil }
        return try makeDeviceStreams(devices)
    }

    private func makeDeviceStreams(_ devices: DeviceList) throws -> [any Backend] {
        if backend == .cuda { for d in devices.ordinals { try capDevice(d) } }
        return try StageBackendCache.shared.backends(for: devices.ordinals, backend: backend, threads: threads)
    }
}

/// `reel serve --session-devices`: engines separated by commas, each one device or a group of devices joined by +
/// (`0,1,2,3`: four whole-model engines; `0+1,2+3`: two engines, each DiT spread over its two devices).
struct SessionGroups: Sendable, CustomStringConvertible {
    let groups: [[Int]]

    init(parsing text: String) throws {
        let engines = text.split(separator: ",", omittingEmptySubsequences: false).map { engine in
            engine.split(separator: "+", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        }
        guard !engines.isEmpty, engines.allSatisfy({ $0.allSatisfy { ($0 ?? -1) >= 0 } }) else {
            throw ValidationError("--session-devices takes device ordinals, an engine's separated by commas and a group's "
                                  + "joined by +, e.g. 0,1 or 0+1,2+3; got '\(text)'.")
        }
        groups = engines.map { $0.map { $0! } }
        let all = groups.flatMap { $0 }
        guard Set(all).count == all.count else {
            throw ValidationError("--session-devices \(text) names a device twice; each engine needs devices of its own.")
        }
    }

    var description: String { groups.map { $0.map(String.init).joined(separator: "+") }.joined(separator: ",") }
}

/// One stream per device of `--devices` for the timestep-forcing stages, made once per process.
final class StageBackendCache: @unchecked Sendable {
    static let shared = StageBackendCache()
    private let lock = NSLock()
    private var made: [String: [any Backend]] = [:]

    func backends(for ordinals: [Int], backend: BackendOptions.Kind, threads: Int?) throws -> [any Backend] {
        try lock.withLock {
            let key = "\(backend.rawValue):\(ordinals)"
            if let b = made[key] { return b }
            let b: [any Backend] = try ordinals.map { ordinal in
                switch backend {
                case .cpu: CPUBackend(threads: threads, device: CPUDevice(ordinal: ordinal))
                case .cuda: try CUDABackend(device: ordinal, tuning: BackendOptions.tuning)
                }
            }
            made[key] = b
            return b
        }
    }
}

/// The in-process CPU devices of `--backend cpu`'s placement options, one per ordinal and process.
final class CPUDeviceCache: @unchecked Sendable {
    static let shared = CPUDeviceCache()
    private let lock = NSLock()
    private var made: [Int: CPUDevice] = [:]

    func device(_ ordinal: Int) -> CPUDevice {
        lock.withLock {
            if let d = made[ordinal] { return d }
            let d = CPUDevice(ordinal: ordinal)
            made[ordinal] = d
            return d
        }
    }
}

/// `--devices 0,1,2,3`: distinct device ordinals.
struct DeviceList: Sendable, CustomStringConvertible {
    let ordinals: [Int]

    init(parsing text: String) throws {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let values = parts.map { Int($0) }
        guard !parts.isEmpty, values.allSatisfy({ ($0 ?? -1) >= 0 }) else {
            throw ValidationError("--devices takes device ordinals separated by commas, e.g. 0,1; got '\(text)'.")
        }
        ordinals = values.map { $0! }
        guard Set(ordinals).count == ordinals.count else {
            throw ValidationError("--devices \(text) names a device twice; each rank needs a device of its own.")
        }
    }

    var description: String { ordinals.map(String.init).joined(separator: ",") }
}

/// One communicator per process and device list: `make()` and `makeCommunicator()` give the same ranks.
final class CommunicatorCache: @unchecked Sendable {
    static let shared = CommunicatorCache()
    private let lock = NSLock()
    private var made: [String: any Communicator] = [:]

    func communicator(for ordinals: [Int], backend: BackendOptions.Kind, threads: Int?) throws -> any Communicator {
        try lock.withLock {
            let key = "\(backend.rawValue):\(ordinals)"
            if let c = made[key] { return c }
            let c: any Communicator = switch backend {
            case .cpu: try CPUCommunicator(ranks: ordinals.count, threads: threads)
            case .cuda: try NCCLCommunicator(devices: ordinals, tuning: BackendOptions.tuning)
            }
            made[key] = c
            return c
        }
    }
}
