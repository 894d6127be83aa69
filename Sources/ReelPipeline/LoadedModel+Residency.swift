import Foundation
import ReelCore
import ReelIO
import ReelModels

/// `--gpu-memory GB` for a model folder (`reel generate`, `serve`, `eval`, `bench DIR`): what `LoadedModel.load`
/// needs to place the model under the cap by `ResidencyPlan` (docs/memory.md).
public struct Residency: @unchecked Sendable {
    /// The cap in bytes.
    public var cap: Int
    /// Device slots streamed DiT blocks pass through (`--stream-slots`).
    public var slots: Int
    /// The video size the plan is made for (a server's default size; larger sessions are checked against it).
    public var geometry: BlockGeometry
    public var schedule: StreamingSchedule
    /// A backend computing in host memory (the CPU's): the text encoder runs there when the plan moves it off the
    /// device, and streamed blocks' weights are read and prepared there on their way into host buffers.
    public var host: any Backend
    /// Bytes of the cap the plan leaves free for what its estimate does not count (`ResidencyPlan.reserve`).
    public var reserve: Int
    /// Host memory the streamed blocks' copies may take (`--host-memory GB`, `REEL_HOST_MEMORY_GB`); when they
    /// would not fit, they stream from the memory-mapped weight file. Default: `availableHostMemory()`.
    public var hostMemory: Int?

    public init(cap: Int, slots: Int = 2, geometry: BlockGeometry, schedule: StreamingSchedule = .longLive,
                host: any Backend, reserve: Int = 0, hostMemory: Int? = Residency.availableHostMemory()) {
        self.cap = cap
        self.reserve = reserve
        self.hostMemory = hostMemory
        self.slots = slots
        self.geometry = geometry
        self.schedule = schedule
        self.host = host
    }
}

extension Residency {
    /// MemAvailable of /proc/meminfo in bytes (Linux), nil where it cannot be read.
    public static func availableHostMemory() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kb = Int(fields[1]) { return kb * 1024 }
        }
        return nil
    }
}

/// A loaded model's placement under `--gpu-memory` and the estimate it was made from, for checking other video
/// sizes against it (`reel serve`'s sessions).
public struct ModelPlacement: Sendable {
    public let plan: ResidencyPlan
    let dit: WanDiTConfig
    let ditParameters: Int
    /// umT5's parameters when its placement was the plan's to choose (nil: `--text-backend` chose it).
    let textEncoderParameters: Int?
    let decoder: MemoryEstimate.Decoder?
    let schedule: StreamingSchedule
    let dtype: DType
    let quantization: LinearQuantization?
    let kvCache: KVCacheStorage

    /// The estimate of this model at `geometry`.
    public func estimate(_ geometry: BlockGeometry) -> MemoryEstimate {
        MemoryEstimate.streaming(dit: dit, ditParameters: ditParameters, textEncoderParameters: textEncoderParameters,
                                 decoder: decoder, geometry: geometry, schedule: schedule, dtype: dtype,
                                 quantization: quantization, kvCache: kvCache)
    }

    /// Throws the plan's refusal, naming the device memory it needs, unless a video of `geometry` fits under the
    /// cap with the model placed as it is.
    public func check(_ geometry: BlockGeometry) throws {
        try plan.check(estimate(geometry), what: "a \(geometry.width)x\(geometry.height) video")
    }

    /// The plan for `files` (weight file headers only: nothing is loaded) under `residency`. `textEncoderChosen`:
    /// `--text-backend` put umT5 somewhere already, so the plan leaves it out.
    static func make(files: ModelFiles, ema: Bool, decoder wantsDecoder: Bool, residency: Residency, dtype: DType,
                     quantization: LinearQuantization?, kvCache: KVCacheStorage,
                     textEncoderChosen: Bool) throws -> ModelPlacement {
        guard let ditPath = files.dit else { throw files.missing(.dit, option: "--dit FILE") }
        let (source, _) = try WanDiT.openCheckpoint(path: ditPath, ema: ema)
        let file = try WeightFiles.open(ditPath)
        let layout = WanDiT.Layout.detect(source.keys)
        var config = try WanDiT.detectConfig(try WeightBinder(source: source, rules: layout.rules, backend: residency.host,
                                                              dtype: .f32))
        if let heads = files.heads ?? file.metadata["heads"].flatMap(Int.init) { config.heads = heads }
        if let n = file.metadata["text_len"].flatMap(Int.init) { config.textLength = n }
        let ditParameters = ModelInspection.parameters(of: source) { _ in true }
        let textSource = try files.textEncoder.map { try WeightFileTensors(path: $0) }
        let textParameters = textSource.map { ModelInspection.parameters(of: $0) { _ in true } }
        let textFP8 = try textSource.map { source in
            ResidencyPlan.textEncoderFP8Bytes(try UMT5Encoder.detectConfig(from: source, backend: residency.host),
                                              parameters: textParameters ?? 0, dtype: dtype)
        }
        var decoder: MemoryEstimate.Decoder?
        if wantsDecoder {
            var report = ModelInspection.PartReport(part: .init(role: .vae, path: "", folder: ""))
            if let path = files.tinyDecoder {
                report.part = .init(role: .tinyDecoder, path: path, folder: "")
                decoder = try ModelInspection.readTinyDecoder(&report)
            } else if let path = files.vae {
                report.part.path = path
                decoder = try ModelInspection.readVAE(&report, backend: residency.host)
            }
        }
        let textEncoderParameters = textEncoderChosen ? nil : textParameters
        let estimate = MemoryEstimate.streaming(dit: config, ditParameters: ditParameters,
                                                textEncoderParameters: textEncoderParameters, decoder: decoder,
                                                geometry: residency.geometry, schedule: residency.schedule, dtype: dtype,
                                                quantization: quantization, kvCache: kvCache)
        let plan = try ResidencyPlan.make(estimate: estimate, dit: config, cap: residency.cap, slots: residency.slots,
                                          dtype: dtype, quantization: quantization, reserve: residency.reserve,
                                          hostKVCache: !config.runsLongLive2,
                                          hostMemory: residency.hostMemory,
                                          textEncoderFP8Bytes: textEncoderChosen ? nil : textFP8)
        return ModelPlacement(plan: plan, dit: config, ditParameters: ditParameters,
                              textEncoderParameters: textEncoderParameters, decoder: decoder, schedule: residency.schedule,
                              dtype: dtype, quantization: quantization, kvCache: kvCache)
    }
}
