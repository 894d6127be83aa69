import ArgumentParser
import Foundation
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
import ReelPipeline

/// `reel inspect`: a model folder (what was found, what is missing, the device memory it will take), or
/// the tensors of weight files, without loading them.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a model folder holds and the memory it needs, or list the tensors of weight files.",
        discussion: """
        A folder (`reel inspect DIR`) is recognised as --model recognises it (docs/model-folders.md): each part         found with its format, key layout, parameters per stored dtype and architecture; what is missing;         and an estimate of the device memory at --size (weights in --dtype, the KV cache of the attention         window, activations). It exits with failure when a part is missing or unreadable.         Files are listed tensor by tensor: safetensors, PyTorch .pt/.pth zip checkpoints and sharded         *.safetensors.index.json sets (format detected from the content); nested checkpoint dictionaries         are shown as "."-joined keys (generator.model.blocks.0...). --tensors lists a folder's tensors instead.
        """
    )

    @Argument(help: "A model folder, or weight files to list.")
    var files: [String]

    @Option(help: "Base folder for the parts a LongLive, Self-Forcing or CausVid folder lacks (Wan2.1; LongLive 2.0: Wan2.2-TI2V-5B).")
    var base: String?

    @OptionGroup var size: SizeOption

    @Option(help: "Dtype of the weights and activations on the device for the estimate: bf16, f16 or f32.")
    var dtype = "bf16"

    @Option(help: "Latent frames the self-attention window holds, sink included (LongLive local_attn_size: 12).")
    var attentionFrames = StreamingSchedule.longLive.attentionFrames

    /// The estimate with the DiT's block weights in FP8 or INT8 (as generate's --fp8 or --int8 runs them).
    @OptionGroup var quantizationOptions: QuantizationOptions
    @Option(name: .customLong("kv-cache"),
            help: ArgumentHelp("The estimate with the self-attention KV cache in bf16 (the model's dtype) or fp8 (as --kv-cache fp8 runs it).",
                               valueName: "bf16|fp8"))
    var kvCache = KVCacheStorage.model

    @Option(name: .customLong("gpu-memory"), help: ArgumentHelp(
        "Also print the placement under this device-memory cap in GB: DiT blocks resident and streamed, where the "
            + "text encoder runs, or why the cap cannot hold the request (5% of the cap kept back, as --gpu-memory-reserve's "
            + "default).", valueName: "GB"))
    var gpuMemory: Double?

    @Option(help: "Device slots streamed DiT blocks pass through (with --gpu-memory): 2 or 3.")
    var streamSlots = 2

    @Flag(help: "List the tensors of a folder's weight file (a diffusers component such as transformer/).")
    var tensors = false

    @Option(help: "Show only keys that contain this text.")
    var filter: String?

    @Flag(help: "Print only the summary line of each file.")
    var summary = false

    @Flag(help: "Read every tensor and print its min, max, mean, RMS and count of NaN/Inf values.")
    var stats = false

    mutating func validate() throws {
        if files.isEmpty { throw ValidationError("Name a model folder or at least one weight file.") }
        if summary && stats { throw ValidationError("--summary prints no tensors; drop it to see --stats.") }
        if let gpuMemory, !(gpuMemory > 0) { throw ValidationError("--gpu-memory must be a positive number of GB.") }
        if !(1...4).contains(streamSlots) { throw ValidationError("--stream-slots must be 1 to 4, got \(streamSlots).") }
        guard ["bf16", "f16", "f32"].contains(dtype) else { throw ValidationError("--dtype must be bf16, f16 or f32, got \(dtype).") }
        var schedule = StreamingSchedule.longLive
        schedule.attentionFrames = attentionFrames
        do { try schedule.validate() } catch { throw ValidationError("--attention-frames: \(error)") }
    }

    /// Whether the one argument is a model folder to report on.
    var isModelFolder: Bool {
        var isDir: ObjCBool = false
        return files.count == 1 && !tensors && FileManager.default.fileExists(atPath: files[0], isDirectory: &isDir) && isDir.boolValue
    }

    func run() throws {
        if isModelFolder { return try inspectFolder(files[0]) }
        var failures = 0
        var total = 0
        for path in files {
            do {
                let file = try WeightFiles.open(path)
                total += try printFile(file)
            } catch {
                failures += 1
                printError(error)
            }
        }
        if files.count > 1 && failures < files.count {
            print("total: \(MemoryEstimate.grouped(total)) parameters in \(files.count - failures) file(s)")
        }
        if failures > 0 { throw ExitCode.failure }
    }

    private func inspectFolder(_ path: String) throws {
        do {
            let folder = try ModelFolder.recognise(path, base: base)
            let inspection = ModelInspection(folder: folder, backend: CPUBackend())
            var schedule = StreamingSchedule.longLive
            schedule.attentionFrames = attentionFrames
            let geometry = try size.geometry(folderSize: folder.size)
            let quantization = quantizationOptions.quantization, type = DType(rawValue: dtype) ?? .bf16
            print(inspection.report(geometry: geometry, schedule: schedule, dtype: type, quantization: quantization,
                                    kvCache: kvCache))
            if let gpuMemory, let dit = inspection.dit,
               let estimate = inspection.estimate(geometry: geometry, schedule: schedule, dtype: type,
                                                  quantization: quantization, kvCache: kvCache) {
                let cap = Int(gpuMemory * 1e9)
                print(try ResidencyPlan.make(estimate: estimate, dit: dit, cap: cap, slots: streamSlots,
                                             dtype: type, quantization: quantization,
                                             reserve: Int(Double(cap) * BackendOptions.defaultReserveFraction),
                                             hostKVCache: !dit.runsLongLive2).description)
            }
            if !inspection.isComplete { throw ExitCode.failure }
        } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        }
    }

    /// Prints one file and returns the parameter count of the keys shown.
    private func printFile(_ file: any WeightFile) throws -> Int {
        let keys = filter.map { f in file.keys.filter { $0.contains(f) } } ?? file.keys
        var rows: [(key: String, dtype: String, shape: String, stats: String)] = []
        let cpu = stats ? CPUBackend() : nil
        var parameters = 0
        for key in keys {
            let info = try file.info(key)
            parameters += info.parameterCount
            let dtype = info.storedType == info.dtype.rawValue ? info.dtype.rawValue : "\(info.dtype) (\(info.storedType))"
            let line = try cpu.map { Self.statistics(try file.tensor(key, on: $0, as: .f32).toFloats()) } ?? ""
            rows.append((key, dtype, info.shape.description, line))
        }
        let shown = filter == nil ? "" : " matching '\(filter!)'"
        print("\(file.path): \(file.format), \(keys.count) \(keys.count == 1 ? "tensor" : "tensors")\(shown), \(MemoryEstimate.grouped(parameters)) parameters"
            + (Self.vaeName(file.keys).map { ", \($0)" } ?? ""))
        if summary { return parameters }
        for (k, v) in file.metadata.sorted(by: { $0.key < $1.key }) where filter.map({ k.contains($0) }) ?? true {
            print("  metadata \(k) = \(v.count > 200 ? String(v.prefix(200)) + "..." : v)")
        }
        let keyWidth = rows.map(\.key.count).max() ?? 0
        let dtypeWidth = rows.map(\.dtype.count).max() ?? 0
        let shapeWidth = rows.map(\.shape.count).max() ?? 0
        for r in rows {
            // The shape column is padded only when the stats column follows it.
            print("  " + r.key.padding(toLength: keyWidth, withPad: " ", startingAt: 0) + "  "
                + r.dtype.padding(toLength: dtypeWidth, withPad: " ", startingAt: 0) + "  "
                + (stats ? r.shape.padding(toLength: shapeWidth, withPad: " ", startingAt: 0) + "  " + r.stats : r.shape))
        }
        return parameters
    }

    /// "Wan2.2 VAE (Wan key names)" when the keys are a Wan VAE's (from the names alone), else nil.
    static func vaeName(_ keys: [String]) -> String? {
        guard let layout = try? WanVAEKeyLayout.detect(keys) else { return nil }
        return "\(WanVAEConfig.family(keys: keys).name) (\(layout == .wan ? "Wan" : "diffusers") key names)"
    }

    /// "min -0.1 max 0.2 mean 0.001 rms 0.05" over the finite values, plus the count of the others.
    static func statistics(_ v: [Float]) -> String {
        var lo = Float.infinity, hi = -Float.infinity, sum = 0.0, squares = 0.0, finite = 0
        for x in v where x.isFinite {
            lo = min(lo, x); hi = max(hi, x)
            sum += Double(x); squares += Double(x) * Double(x)
            finite += 1
        }
        let bad = v.count - finite
        guard finite > 0 else { return v.isEmpty ? "(empty)" : "all \(bad) values NaN/Inf" }
        func f(_ x: Double) -> String { String(format: "%.4g", x) }
        let n = Double(finite)
        return "min \(f(Double(lo))) max \(f(Double(hi))) mean \(f(sum / n)) rms \(f((squares / n).squareRoot()))"
            + (bad > 0 ? "  \(bad) NaN/Inf" : "")
    }
}
