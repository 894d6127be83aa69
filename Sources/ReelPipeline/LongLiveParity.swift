import Foundation
import ReelCore
import ReelIO
import ReelModels

/// Runs Reel on a parity fixture made by LongLive v1.0's own code
/// (`tools/fixtures/dit/make_longlive_fixture.py`) and measures the difference, on any backend.
/// The fixture folder holds `longlive_base.pt`, `lora.pt` and `case.safetensors` (noise, every
/// re-noise draw, the prompt embeddings, LongLive's latents, and the run's configuration).
public struct LongLiveParity {
    public struct Variant: Sendable {
        public var lora = true
        public var recache = true
        public var schedule = StreamingSchedule.longLive
        /// A converted checkpoint (LoRA merged) to load instead of the fixture's .pt files.
        public var converted: String?
        /// The DiT's layers in FP8 or INT8 (`WanDiT.quantized`, after the LoRA is merged): how far
        /// the codes' rounding moves the video, relative to the model's contribution.
        public var quantization: LinearQuantization?
        /// How the self-attention cache stores keys and values (`WanDiT.kvCache`): FP8 moves the video by the
        /// rounding of every cached key and value.
        public var kvCache: KVCacheStorage
        /// How the self-attention computes (`WanDiT.attentionPrecision`): FP8 moves the video by the rounding of
        /// Q, K, V, the probabilities and the output of every self-attention.
        public var attention: AttentionPrecision
        public init(lora: Bool = true, recache: Bool = true, schedule: StreamingSchedule = .longLive, converted: String? = nil,
                    quantization: LinearQuantization? = nil, kvCache: KVCacheStorage = .model,
                    attention: AttentionPrecision = .model) {
            self.lora = lora; self.recache = recache; self.schedule = schedule; self.converted = converted
            self.quantization = quantization
            self.kvCache = kvCache
            self.attention = attention
        }
    }

    /// Reel's latents, LongLive's, and a v = 0 model's from the same noise; blocks of 3 latent frames.
    public typealias Result = ParityResult

    public let folder: String
    public let backend: any Backend
    public let dtype: DType
    /// The DiT spread over these ranks by `parallelism` (`backend` is then its rank 0's stream).
    public let communicator: (any Communicator)?
    public let parallelism: DiTParallelScheme
    let config: [String: Any]

    public init(folder: String, backend: any Backend, communicator: (any Communicator)? = nil,
                parallelism: DiTParallelScheme = .sequence, dtype: DType = .f32) throws {
        self.folder = folder; self.backend = backend; self.dtype = dtype; self.communicator = communicator
        self.parallelism = parallelism
        if let communicator, communicator.streams[0] !== backend {
            throw ReelError.input("parity: the backend must be rank 0's stream of \(communicator.name)")
        }
        let meta = try WeightFiles.open(Self.path(folder, "case.safetensors")).metadata
        guard let text = meta["config"], let data = text.data(using: .utf8),
              let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ReelError.badFile(path: Self.path(folder, "case.safetensors"), message: "no 'config' JSON in the metadata")
        }
        config = json
    }

    static func path(_ folder: String, _ name: String) -> String { (folder as NSString).appendingPathComponent(name) }

    public func run(_ variant: Variant = Variant()) async throws -> Result {
        guard let heads = config["heads"] as? Int, let height = config["height"] as? Int, let width = config["width"] as? Int,
              let blocks = config["blocks"] as? Int, let switches = config["switch"] as? [Int] else {
            throw ReelError.badFile(path: Self.path(folder, "case.safetensors"), message: "config lacks heads, height, width, blocks or switch")
        }
        let caseFile = try WeightFiles.open(Self.path(folder, "case.safetensors"))
        var dit = try variant.converted.map {
            try WanDiT.load(path: $0, backend: backend, communicator: communicator, parallelism: parallelism, dtype: dtype)
        } ?? WanDiT.load(path: Self.path(folder, "longlive_base.pt"), lora: variant.lora ? Self.path(folder, "lora.pt") : nil,
                         heads: heads, backend: backend, communicator: communicator, parallelism: parallelism,
                         dtype: dtype)
        if let q = variant.quantization { dit = try dit.quantized(q) }
        dit.kvCache = variant.kvCache
        dit.attentionPrecision = variant.attention
        let prompts = try (0...switches.count).map {
            try dit.encodePrompt(try caseFile.tensor("prompt.\($0)", on: backend, as: dtype))
        }
        let noiseT = try caseFile.tensor("noise", on: backend, as: .f32)
        let renoiseT = try caseFile.tensor("renoise", on: backend, as: .f32)
        let request = PipelineRequest(geometry: BlockGeometry(latentWidth: width, latentHeight: height),
                                      latentFrames: blocks * variant.schedule.framesPerBlock, decode: false,
                                      recacheOnSwitch: variant.recache, schedule: variant.schedule)
        // LongLive switches at the first block starting at or after each switch frame.
        let contexts = UncheckedSendable(prompts), blockFrames = variant.schedule.framesPerBlock
        let pipeline = try Pipeline(model: ModelParts(dit: dit), request: request, prompt: prompts[0],
                                    noise: try RecordedNoise(initial: noiseT, renoise: renoiseT)) { frame in
            let index = switches.filter { $0 <= frame }.count
            return index > switches.filter { $0 <= frame - blockFrames }.count ? contexts.value[index] : nil
        }
        var ours: [Float] = []
        for try await chunk in pipeline.chunks() {
            ours += try backend.permute(try backend.cast(chunk.block.latents, to: .f32), [0, 3, 1, 2]).toFloats()
        }
        // A v = 0 model: x0 = x_t at every step, so each step only mixes in the next draw.
        let n0 = try noiseT.toFloats(), rn = try renoiseT.toFloats()
        let sigmas = try FlowMatchSchedule(steps: variant.schedule.denoisingSteps, warp: variant.schedule.warpDenoisingSteps,
                                           shift: variant.schedule.shift).sigmas
        let steps = sigmas.count - 1
        let perBlock = 3 * 16 * height * width
        var baseline = [Float](repeating: 0, count: n0.count)
        for b in 0..<blocks {
            for i in 0..<perBlock {
                var x = n0[b * perBlock + i]
                for s in 0..<steps { x = (1 - sigmas[s + 1]) * x + sigmas[s + 1] * rn[(b * steps + s) * perBlock + i] }
                baseline[b * perBlock + i] = x
            }
        }
        return Result(ours: ours, reference: try caseFile.tensor("latents", on: backend, as: .f32).toFloats(),
                      baseline: baseline, blockSize: perBlock)
    }
}
