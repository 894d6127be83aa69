import Foundation
import ReelCore
import ReelIO
import ReelModels

/// Runs `StreamBatchGenerator` on a parity fixture made by StreamDiffusionV2's own code
/// (`tools/fixtures/dit/make_sdv2_fixture.py`) and measures the difference, on any backend.
///
/// The folder holds `weights.safetensors` (the DiT, Wan layout, `heads` in the metadata) and one
/// `case.s<N>.safetensors` per step count N: `latents_in [L, 16, h, w]` (raw latents), `pixels [3, T, P, P]`
/// (the frames the motion rule reads: 5, then 4 per block), `prompt`, every noise draw `draw.<i>` in call
/// order, the faithful output `output [frames, 16, h, w]` and each wrong variant's `output.<variant>`;
/// metadata `config` and `trace` (JSON, per call: noise scale, first step, positions, eviction queues).
public struct StreamV2VParity {
    /// A run of the fixture: faithful, or one of the wrong variants the fixture recorded.
    public enum Variant: String, CaseIterable, Sendable {
        case faithful
        case noSinkRefresh = "no_sink_refresh"
        case fixedNoise = "fixed_noise"
        case noStreamBatch = "no_stream_batch"
        case noRopeReset = "no_rope_reset"

        /// The fixture tensor holding the reference's output of this variant.
        public var fixtureKey: String { self == .faithful ? "output" : "output.\(rawValue)" }

        func apply(to s: inout StreamV2VSchedule) {
            switch self {
            case .faithful: break
            case .noSinkRefresh: s.sinkRefreshThreshold = nil
            case .fixedNoise: s.motionAware = false
            case .noStreamBatch: s.streamBatch = false
            case .noRopeReset: s.ropeResetFrame = nil
            }
        }
    }

    public struct Result: Sendable {
        /// Reel's output latents and the reference's, `[frames, C, H, W]` flattened.
        public var ours: [Float]
        public var reference: [Float]
        /// Each call's trace (the first block's call first).
        public var steps: [StreamV2VStep]
        /// Each stream call's eviction queues `[layer][row]`, frames.
        public var queues: [[[[Int]]]]

        /// ||ours - reference|| / ||reference|| (the fixture script's distance).
        public var relativeError: Double { Self.distance(ours, reference) }

        static func distance(_ a: [Float], _ b: [Float]) -> Double {
            var num = 0.0, den = 0.0
            for i in 0..<min(a.count, b.count) {
                num += Double(a[i] - b[i]) * Double(a[i] - b[i]); den += Double(b[i]) * Double(b[i])
            }
            return (num / den).squareRoot()
        }
    }

    public let folder: String
    public let backend: any Backend
    public let dtype: DType

    public init(folder: String, backend: any Backend, dtype: DType = .f32) {
        self.folder = folder; self.backend = backend; self.dtype = dtype
    }

    func path(_ name: String) -> String { (folder as NSString).appendingPathComponent(name) }

    /// The case for `steps` denoising steps, its `config` and `trace` metadata decoded.
    public func openCase(steps: Int) throws -> (file: any WeightFile, config: [String: Any], trace: [[String: Any]]) {
        let file = try WeightFiles.open(path("case.s\(steps).safetensors"))
        func json(_ key: String) throws -> Any {
            guard let text = file.metadata[key], let data = text.data(using: .utf8) else {
                throw ReelError.badFile(path: path("case.s\(steps).safetensors"), message: "no '\(key)' in the metadata")
            }
            return try JSONSerialization.jsonObject(with: data)
        }
        guard let config = try json("config") as? [String: Any], let trace = try json("trace") as? [[String: Any]] else {
            throw ReelError.badFile(path: path("case.s\(steps).safetensors"),
                                    message: "config or trace is not JSON of the expected kind")
        }
        return (file, config, trace)
    }

    /// Runs the case with `steps` denoising steps as `variant` (the schedule the fixture's config states,
    /// the variant's mechanism turned off) and compares with the fixture's output `compareTo` (default:
    /// the variant's own).
    public func run(steps: Int, variant: Variant = .faithful, compareTo: Variant? = nil) throws -> Result {
        let (file, config, _) = try openCase(steps: steps)
        guard let list = config["denoising_step_list"] as? [Int], let height = config["height"] as? Int,
              let width = config["width"] as? Int, let scale = config["noise_scale"] as? Double,
              let tRefresh = config["t_refresh"] as? Int, let cacheFrames = config["num_kv_cache"] as? Int,
              let sink = config["num_sink_tokens"] as? Int, let threshold = config["adapt_sink_threshold"] as? Double,
              let shift = config["shift"] as? Double, let blocks = config["blocks"] as? Int else {
            throw ReelError.badFile(path: path("case.s\(steps).safetensors"), message: "config lacks a schedule field")
        }
        var schedule = StreamV2VSchedule(denoisingSteps: list, shift: shift, noiseScale: scale, cacheFrames: cacheFrames,
                                         sinkFrames: sink, sinkRefreshThreshold: Float(threshold), ropeResetFrame: tRefresh)
        variant.apply(to: &schedule)

        let weights = try WeightFiles.open(path("weights.safetensors"))
        let dit = try WanDiT.load(from: WeightFileTensors(weights), heads: weights.metadata["heads"].flatMap { Int($0) },
                                  backend: backend, dtype: dtype)
        let prompt = try dit.encodePrompt(try file.tensor("prompt", on: backend, as: dtype))
        let draws = try file.keys.filter { $0.hasPrefix("draw.") }.sorted().map { try file.tensor($0, on: backend, as: .f32) }
        let gen = try StreamBatchGenerator(model: dit, prompt: prompt, latentHeight: height, latentWidth: width,
                                           schedule: schedule, noise: try RecordedStreamNoise(draws: draws))

        // Reference layouts: latents [L, C, h, w], pixels [3, T, P, P].
        let latents = try backend.permute(try file.tensor("latents_in", on: backend, as: .f32), [0, 2, 3, 1])
        let pixels = try file.tensor("pixels", on: backend, as: .f32)
        let px = try pixels.toFloats(), frameCount = pixels.shape[1], perChannel = pixels.shape[2] * pixels.shape[3]
        func frame(_ t: Int) -> [Float] {
            var values: [Float] = []
            for ch in 0..<pixels.shape[0] {
                let start = (ch * frameCount + t) * perChannel
                values += px[start..<(start + perChannel)]
            }
            return values
        }

        var outputs: [Tensor] = []
        var steps: [StreamV2VStep] = []
        var queues: [[[[Int]]]] = []
        outputs.append(try gen.start(latents: try backend.slice(latents, axis: 0, start: 0, length: 2)).latents)
        steps.append(gen.lastStep!)
        for b in 0..<blocks {
            // The chunk's 4 frames after the previous chunk's last (frame 4 + 4b).
            let motion = try MotionAwareNoise.frameDifference((0...4).map { frame(4 + 4 * b + $0) })
            if let out = try gen.push(latent: try backend.slice(latents, axis: 0, start: 2 + b, length: 1), motion: motion) {
                outputs.append(out.latents)
            }
            steps.append(gen.lastStep!)
            queues.append(gen.evictionQueues)
        }
        let ours = try backend.permute(try backend.cast(try backend.concat(outputs, axis: 0), to: .f32), [0, 3, 1, 2])
        let reference = try file.tensor((compareTo ?? variant).fixtureKey, on: backend, as: .f32)
        // Against another variant's output, the common frames (no stream batch has no latency).
        guard ours.shape == reference.shape || (compareTo != nil && Array(ours.shape.dims.dropFirst())
                                                == Array(reference.shape.dims.dropFirst())) else {
            let key = (compareTo ?? variant).fixtureKey
            throw ReelError.input("StreamV2VParity: Reel gave \(ours.shape), the fixture's \(key) is \(reference.shape)")
        }
        return Result(ours: try ours.toFloats(), reference: try reference.toFloats(), steps: steps, queues: queues)
    }
}
