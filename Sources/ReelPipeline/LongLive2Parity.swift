import Foundation
import ReelCore
import ReelIO
import ReelModels

/// Runs Reel's LongLive 2.0 generator on the parity fixture made by LongLive 2.0's own code
/// (`tools/fixtures/dit/make_longlive2_fixture.py`) and measures the difference, on any backend. The folder holds
/// `weights.safetensors` (the small random model, Wan key names; `weights.diffusers.safetensors` the same in diffusers'
/// layout) and `case.safetensors` (noise, image latent,
/// prompt embeddings, the reference's latents of each case, and the run's configuration in the metadata).
public struct LongLive2Parity {
    /// The fixture's runs.
    public enum Case: String, Sendable, CaseIterable {
        /// configs/inference.yaml: absolute RoPE, a plain switch and a scene cut.
        case absolute
        /// The same with `use_relative_rope: true`.
        case relative
        /// configs/inference_i2v.yaml: the first frame from an image.
        case i2v
        /// The absolute case with `shot_clean_recache: true`: the scene cut's clean pass over the global sink alone.
        case cleanRecache = "clean_recache"
        /// The absolute case with classifier-free guidance (`guidance_scale` 3, the fixture's negative prompt).
        case guidance
        /// The absolute case with the fixture's LoRA (`lora.pt`, PEFT keys under "generator_lora") on every block
        /// Linear, merged by Reel at load.
        case lora
    }

    /// What Reel runs: the schedule, and the image conditioning's timestep rule.
    public struct Variant: Sendable {
        public var schedule: LongLive2Schedule
        /// Run the image frame at t = 0 (the reference); false gives it the step's timestep (a wrong variant).
        public var imageAtTimestepZero = true
        /// The weights file in the folder: `weights.safetensors` (Wan's names) or `weights.diffusers.safetensors`.
        public var weights = "weights.safetensors"
        /// The DiT's block linears in FP8 (LongLive 2.0's own FP8 PTQ, `utils/fp8.py`, quantizes every block linear
        /// per row and keeps the embeddings and the head in bf16: `.allLinears`); nil: the checkpoint's dtype.
        /// INT8 (`.int8(.allLinears)`) is the same W8A8 recipe with INT8 codes.
        public var quantization: LinearQuantization?
        /// The guidance scale for the `.guidance` case (nil: the fixture's); 1 turns guidance off (a wrong variant).
        public var guidanceScale: Float?
        /// Merge the fixture's LoRA in the `.lora` case (false: the base weights alone, a wrong variant).
        public var lora = true
        public init(schedule: LongLive2Schedule, imageAtTimestepZero: Bool = true, weights: String = "weights.safetensors",
                    quantization: LinearQuantization? = nil, guidanceScale: Float? = nil, lora: Bool = true) {
            self.schedule = schedule; self.imageAtTimestepZero = imageAtTimestepZero; self.weights = weights
            self.quantization = quantization; self.guidanceScale = guidanceScale; self.lora = lora
        }
    }

    /// Reel's latents, the reference's, and a v = 0 model's from the same noise; blocks of 8 latent frames.
    public typealias Result = ParityResult

    public let folder: String
    public let backend: any Backend
    public let dtype: DType
    let config: [String: Any]

    public init(folder: String, backend: any Backend, dtype: DType = .f32) throws {
        self.folder = folder; self.backend = backend; self.dtype = dtype
        let path = (folder as NSString).appendingPathComponent("case.safetensors")
        guard let text = try WeightFiles.open(path).metadata["config"], let data = text.data(using: .utf8),
              let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ReelError.badFile(path: path, message: "no 'config' JSON in the metadata")
        }
        config = json
    }

    /// The schedule the reference ran for `c`.
    public static func referenceSchedule(_ c: Case) -> LongLive2Schedule {
        var s = LongLive2Schedule.longLive2
        s.relativeRoPE = c == .relative
        s.shotCleanRecache = c == .cleanRecache
        return s
    }

    /// One run of the suite: a case with Reel's variant, faithful or deliberately wrong.
    public struct Run: Sendable {
        public var name: String
        public var testCase: Case
        public var variant: Variant
        public var isFaithful: Bool
        public init(name: String, testCase: Case, variant: Variant, isFaithful: Bool) {
            self.name = name; self.testCase = testCase; self.variant = variant; self.isFaithful = isFaithful
        }
    }

    /// The faithful run of every case, then each piece of the schedule dropped or swapped (each must land far from
    /// the reference): the list `reel parity --longlive2` and the tests share.
    public static var runs: [Run] {
        func wrong(_ name: String, _ c: Case, _ edit: (inout LongLive2Schedule) -> Void) -> Run {
            var s = referenceSchedule(c)
            edit(&s)
            return Run(name: name, testCase: c, variant: Variant(schedule: s), isFaithful: false)
        }
        return Case.allCases.map { Run(name: "faithful, \($0)", testCase: $0, variant: Variant(schedule: referenceSchedule($0)),
                                       isFaithful: true) } + [
            wrong("no sink", .absolute) { $0.sinkFrames = 0; $0.multiShotSink = false },
            wrong("no pinned shot sink", .absolute) { $0.multiShotSink = false },
            wrong("no shot RoPE offset", .absolute) { $0.shotRoPEOffset = 0 },
            wrong("relative RoPE for absolute", .absolute) { $0.relativeRoPE = true },
            wrong("absolute RoPE for relative", .relative) { $0.relativeRoPE = false },
            wrong("no clean recache", .cleanRecache) { $0.shotCleanRecache = false },
            Run(name: "no guidance", testCase: .guidance,
                variant: Variant(schedule: referenceSchedule(.guidance), guidanceScale: 1), isFaithful: false),
            Run(name: "guidance 2 for 3", testCase: .guidance,
                variant: Variant(schedule: referenceSchedule(.guidance), guidanceScale: 2), isFaithful: false),
            Run(name: "no LoRA", testCase: .lora,
                variant: Variant(schedule: referenceSchedule(.lora), lora: false), isFaithful: false),
            Run(name: "image at the step's t", testCase: .i2v,
                variant: Variant(schedule: referenceSchedule(.i2v), imageAtTimestepZero: false), isFaithful: false),
        ]
    }

    public func run(_ c: Case, _ variant: Variant? = nil) throws -> Result {
        let variant = variant ?? Variant(schedule: Self.referenceSchedule(c))
        let path = (folder as NSString).appendingPathComponent("case.safetensors")
        guard let heads = config["heads"] as? Int, let height = config["height"] as? Int,
              let width = config["width"] as? Int, let cuts = config["scene_cut"] as? [Bool],
              let order = config[c == .i2v ? "i2v_prompts" : "block_prompts"] as? [Int] else {
            throw ReelError.badFile(path: path, message: "config lacks heads, height, width, scene_cut or the block prompts")
        }
        let file = try WeightFiles.open(path)
        let lora = c == .lora && variant.lora ? (folder as NSString).appendingPathComponent("lora.pt") : nil
        var dit = try WanDiT.load(path: (folder as NSString).appendingPathComponent(variant.weights), lora: lora,
                                  heads: heads, backend: backend, dtype: dtype)
        if let q = variant.quantization { dit = try dit.quantized(q) }
        let prompts = try cuts.indices.map { try dit.encodePrompt(try file.tensor("prompt.\($0)", on: backend, as: dtype)) }
        let noise = try file.tensor("noise", on: backend, as: .f32)                       // [F, C, H, W]
        let image = c == .i2v ? try backend.permute(try file.tensor("image", on: backend, as: .f32), [0, 2, 3, 1]) : nil
        var guidance: LongLive2Generator.Guidance?
        if c == .guidance {
            guard let scale = variant.guidanceScale ?? (config["guidance_scale"] as? Double).map(Float.init) else {
                throw ReelError.badFile(path: path, message: "config lacks guidance_scale")
            }
            guidance = .init(scale: scale, negative: try dit.encodePrompt(try file.tensor("negative", on: backend, as: dtype)))
        }
        let generator = try LongLive2Generator(model: dit, latentHeight: height, latentWidth: width,
                                               schedule: variant.schedule, noise: try RecordedNoise(initial: noise),
                                               image: image, guidance: guidance)
        generator.imageAtTimestepZero = variant.imageAtTimestepZero
        var ours: [Float] = []
        for p in order {
            let block = try generator.nextBlock(prompt: prompts[p], sceneCut: cuts[p])
            ours += try backend.permute(try backend.cast(block, to: .f32), [0, 3, 1, 2]).toFloats()
        }
        let frames = order.count * variant.schedule.framesPerBlock
        let perFrame = dit.config.inChannels * height * width
        // A v = 0 model leaves the noise unchanged through UniPC (x0 = x_t is exact for a constant x0); the image
        // frame stays the image.
        var baseline = Array(try noise.toFloats()[0..<(frames * perFrame)])
        if c == .i2v {
            baseline.replaceSubrange(0..<perFrame, with: try file.tensor("image", on: backend, as: .f32).toFloats())
        }
        return Result(ours: ours, reference: try file.tensor("latents.\(c.rawValue)", on: backend, as: .f32).toFloats(),
                      baseline: baseline, blockSize: variant.schedule.framesPerBlock * perFrame)
    }
}
