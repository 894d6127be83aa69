import ArgumentParser
import Foundation
import ReelCore
import ReelCPU
import ReelCUDA
import ReelModels

/// `reel check-comm`: NCCL's collectives over the GPUs of this machine against the CPU communicator (the
/// oracle) on the same inputs, timed, with each scheme's exchange of a DiT layer; then the Wan DiT spread over
/// the GPUs by sequence (Ulysses) and tensor (Megatron) parallelism against the same model on one GPU
/// (velocities of a block, a clean pass and the next block), each timed per forward, side by side.
struct CheckComm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-comm",
        abstract: "Check NCCL's collectives and the DiT spread over several GPUs (sequence and tensor parallel) against the CPU and one GPU.",
        discussion: """
            With one GPU the collectives run as a one-rank communicator and the DiT on one rank (the code path, \
            not the speed); spreading work needs two or more GPUs. Data movement (gather, all-to-all, send) must \
            be exact; sums and the DiT are compared by nmse = sum((a - b)^2) / sum(b^2). Exits non-zero on any failure.
            """
    )

    @Option(help: "GPUs to use, e.g. 0,1 (default: every visible GPU).", transform: { try DeviceList(parsing: $0) })
    var devices: DeviceList?

    enum Architecture: String, ExpressibleByArgument, CaseIterable {
        case wan1_3b = "1.3b", wan14b = "14b"
        var config: WanDiTConfig { self == .wan1_3b ? .wan1_3B : .wan14B }
    }

    @Option(help: "DiT architecture, random weights: 1.3b (12 heads) or 14b (40 heads).")
    var model: Architecture = .wan1_3b
    @Option(help: "DiT layers (default: the architecture's).")
    var layers: Int?
    @OptionGroup var size: SizeOption
    @Option(help: "Timed forwards per variant.")
    var iterations = 5
    @Flag(help: "Check the collectives only.")
    var noDit = false
    enum Schemes: String, ExpressibleByArgument, CaseIterable {
        case both, sequence, tensor
        var schemes: [DiTParallelScheme] {
            switch self {
            case .both: [.sequence, .tensor]
            case .sequence: [.sequence]
            case .tensor: [.tensor]
            }
        }
    }
    @Option(help: "Which ways of spreading the DiT to check and time: both (side by side), sequence or tensor.")
    var parallelism: Schemes = .both

    func validate() throws {
        if let layers, layers < 1 { throw ValidationError("--layers must be at least 1.") }
        if iterations < 1 { throw ValidationError("--iterations must be at least 1.") }
    }

    func run() throws {
        do { try check() } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        }
    }

    private func check() throws {
        let inventory = CUDAInventory.discover()
        guard !inventory.devices.isEmpty else {
            throw ReelError.input("check-comm needs a GPU: \(inventory.problem ?? "none found")")
        }
        let ordinals = devices?.ordinals ?? inventory.devices.map(\.ordinal)
        let nccl = try CUDALibraries.nccl()
        let gpus = try NCCLCommunicator(devices: ordinals, tuning: BackendOptions.tuning)
        let cpus = try CPUCommunicator(ranks: ordinals.count)
        print("check-comm: \(gpus.name) (NCCL \(nccl.versionString), \(nccl.library.path)) against \(cpus.name)")
        if ordinals.count == 1 {
            print("one rank: collectives are copies and the DiT runs whole on cuda:\(ordinals[0]); spreading it needs "
                  + "two or more GPUs (this machine shows \(inventory.devices.count); --devices 0,1 names them)")
        }
        var failures = try CollectiveCheck(gpus: gpus, cpus: cpus).run()
        if !noDit {
            var config = model.config
            if let layers { config.layers = layers }
            failures += try ParallelDiTCheck(gpus: gpus, config: config, geometry: size.geometry(folderSize: nil),
                                             iterations: iterations, schemes: parallelism.schemes).run()
        }
        if !failures.isEmpty {
            print("FAILED: \(failures.joined(separator: ", "))")
            throw ExitCode.failure
        }
        print("all checks passed")
    }
}

/// Each collective on random inputs over the GPUs and over as many CPU ranks: the same inputs (made on the
/// host, uploaded to both), the outputs compared rank by rank; then timed at the DiT's exchange size.
struct CollectiveCheck {
    let gpus: NCCLCommunicator
    let cpus: CPUCommunicator

    /// Rank r's inputs of `shape` on both communicators (the same bytes).
    func inputs(_ shape: Shape, _ dtype: DType, seed: UInt64) throws -> (gpu: [Tensor], cpu: [Tensor]) {
        let host = CPUBackend()
        var gpu: [Tensor] = [], cpu: [Tensor] = []
        for r in 0..<gpus.ranks {
            let bytes = try host.downloadBytes(try host.randomNormal(shape, seed: seed &+ UInt64(r), offset: 0, dtype: dtype))
            gpu.append(try bytes.withUnsafeBytes { try gpus.streams[r].upload($0, shape: shape, dtype: dtype) })
            cpu.append(try bytes.withUnsafeBytes { try cpus.streams[r].upload($0, shape: shape, dtype: dtype) })
        }
        return (gpu, cpu)
    }

    func run() throws -> [String] {
        let n = gpus.ranks
        print(Column.left("collective", 12) + Column.left("case", 40) + Column.right("nmse", 11) + Column.right("tolerance", 11) + "  result")
        var failures: [String] = []
        func report(_ op: String, _ what: String, _ gpu: [Tensor], _ cpu: [Tensor], tolerance: Double) throws {
            var worst = 0.0
            for (g, c) in zip(gpu, cpu) {
                guard g.shape == c.shape, g.dtype == c.dtype else { worst = .infinity; continue }
                if tolerance == 0 {
                    if try g.backend.downloadBytes(g) != c.backend.downloadBytes(c) { worst = .infinity }
                } else {
                    worst = max(worst, OpCase.nmse(try g.toFloats(), try c.toFloats()))
                }
            }
            let ok = worst <= tolerance
            if !ok { failures.append("\(op) \(what)") }
            print(Column.left(op, 12) + Column.left(what, 40) + Column.right(tolerance == 0 && ok ? "exact" : String(format: "%.2e", worst), 11)
                  + Column.right(tolerance == 0 ? "exact" : String(format: "%.0e", tolerance), 11) + "  " + (ok ? "ok" : "FAIL"))
        }

        // f32 sums differ by NCCL's order of additions; bf16 ones by a rounding per step of its ring.
        for (dtype, tolerance) in [(DType.f32, 1e-10), (.bf16, 1e-4)] {
            let (g, c) = try inputs([1000, 37], dtype, seed: 1)
            try report("allReduce", "sum [1000, 37] \(dtype)", try gpus.allReduceSum(g), try cpus.allReduceSum(c), tolerance: tolerance)
        }
        let (g1, c1) = try inputs([3, 390, 128], .bf16, seed: 10)
        try report("allGather", "[3, 390, 128] bf16", try gpus.allGather(g1), try cpus.allGather(c1), tolerance: 0)
        // Chunks of a shape per pair (rank i to j: [2, 5 + i + 3j, 4, 8]) prove each lands where it should.
        var gChunks: [[Tensor]] = [], cChunks: [[Tensor]] = []
        for i in 0..<n {
            var gRow: [Tensor] = [], cRow: [Tensor] = []
            for j in 0..<n {
                let (g, c) = try inputs([2, 5 + i + 3 * j, 4, 8], .bf16, seed: UInt64(100 + 10 * i + j))
                gRow.append(g[i]); cRow.append(c[i])
            }
            gChunks.append(gRow); cChunks.append(cRow)
        }
        let (ga, ca) = (try gpus.allToAll(gChunks), try cpus.allToAll(cChunks))
        try report("allToAll", "pairs [2, 5 + i + 3j, 4, 8] bf16", ga.flatMap { $0 }, ca.flatMap { $0 }, tolerance: 0)
        let (gs, cs) = try inputs([1560, 96], .f32, seed: 30)
        let to = (n - 1) % n
        try report("send", "rank 0 to \(to) [1560, 96] f32", [try gpus.send(gs[0], from: 0, to: to)],
                   [try cpus.send(cs[0], from: 0, to: to)], tolerance: 0)
        try timeExchange()
        return failures
    }

    /// One layer's exchange of the 1.3B DiT at 832x480 (a block: 3 frames x 1560 tokens, dim 1536, bf16) by
    /// each scheme, timed on rank 0's stream. Sequence (Ulysses): the all-to-all of q, k, v (three [3, 1560/N,
    /// 1536] a rank), and of the attention's output back (a third of it). Tensor (Megatron): three all-reduces of
    /// [4680, 1536] (self-attention's output projection, cross-attention's, the FFN's second layer) and two of
    /// the q/k norms' float32 sums of squares ([2 x 4680] and [4680]).
    func timeExchange() throws {
        let n = gpus.ranks, rows = (1560 + n - 1) / n, share = (1536 + n - 1) / n
        func seconds(_ body: () throws -> Void) throws -> Double {
            try body()
            for s in gpus.streams { try s.synchronize() }
            let start = try gpus.streams[0].recordTimedEvent()
            let repeats = 10
            for _ in 0..<repeats { try body() }
            return try gpus.streams[0].recordTimedEvent().seconds(since: start) / Double(repeats)
        }
        func zeros(_ shape: Shape, _ dtype: DType) throws -> [Tensor] {
            try gpus.streams.map { try $0.zeros(shape, dtype: dtype) }
        }
        func rate(_ bytes: Int, _ s: Double) -> Double { s > 0 ? Double(bytes) / s / 1e9 : 0 }
        let qkv = try (0..<n).map { i in try (0..<n).map { _ in try gpus.streams[i].zeros([9, rows, share], dtype: .bf16) } }
        let back = try (0..<n).map { i in try (0..<n).map { _ in try gpus.streams[i].zeros([3, rows, share], dtype: .bf16) } }
        let toAll = try seconds { _ = try gpus.allToAll(qkv) }
        let toAllBack = try seconds { _ = try gpus.allToAll(back) }
        let qkvBytes = qkv[0].reduce(0) { $0 + $1.byteCount } * (n - 1) / n
        print(String(format: "all-to-all of a block's q, k, v (1.3B, 832x480): %.3f ms, %.1f MB leave each GPU, %.1f GB/s per GPU",
                     toAll * 1e3, Double(qkvBytes) / 1e6, rate(qkvBytes, toAll)))
        let activations = try zeros([4680, 1536], .bf16), normSums = try zeros([2 * 4680, 1], .f32)
        let crossSums = try zeros([4680, 1], .f32)
        let reduce = try seconds { _ = try gpus.allReduceSum(activations) }
        let small = try seconds {
            _ = try gpus.allReduceSum(normSums)
            _ = try gpus.allReduceSum(crossSums)
        }
        print(String(format: "all-reduce of a block's activations [4680, 1536] bf16: %.3f ms (%.1f MB a GPU, %.1f GB/s "
                     + "algorithm bandwidth); the q/k norms' sums: %.3f ms", reduce * 1e3, Double(activations[0].byteCount) / 1e6,
                     rate(activations[0].byteCount, reduce), small * 1e3))
        print(String(format: "exchange per layer over %d GPUs: sequence (Ulysses) %.3f ms (q, k, v out, attention back); "
                     + "tensor (Megatron) %.3f ms (3 all-reduces and the norms' sums); x%d layers for 1.3B: %.1f / %.1f ms",
                     n, (toAll + toAllBack) * 1e3, (3 * reduce + small) * 1e3, 30, 30 * (toAll + toAllBack) * 1e3,
                     30 * (3 * reduce + small) * 1e3))
    }
}
