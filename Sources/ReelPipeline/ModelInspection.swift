import Foundation
import ReelCore
import ReelIO
import ReelModels

/// What a model folder holds, read from the weight files' headers without loading a tensor: each
/// part's format, key layout, parameters per stored dtype and architecture, what is missing, what is
/// unreadable, and the device memory the model takes at a video size. `reel inspect DIR` prints it.
public struct ModelInspection: Sendable {
    /// One part of the model as read from its files.
    public struct PartReport: Sendable {
        public var part: ModelFolder.Part
        /// "safetensors", "PyTorch checkpoint", "sharded index (2 shards)", ...
        public var format = ""
        /// Key layout or sub-dictionary ("wan", "diffusers", "LongLive generator", ...).
        public var layout = ""
        public var parameters = 0
        /// Parameters per dtype as stored ("bf16" -> 1,234).
        public var storedTypes: [String: Int] = [:]
        /// The architecture in words ("dim 1536, 30 layers, 12 heads x 128, ffn 8960").
        public var architecture = ""
        /// Why the part could not be read, if it could not.
        public var problem: String?
    }

    public var folder: ModelFolder
    public var parts: [PartReport]
    public var dit: WanDiTConfig?
    public var textEncoder: UMT5Config?
    public var decoder: MemoryEstimate.Decoder?
    /// Disagreements between config.json and the weights, and unreadable parts.
    public var problems: [String]

    /// Reads every part's headers. `backend` only indexes keys (no tensor is read).
    public init(folder: ModelFolder, backend: any Backend) {
        self.folder = folder
        parts = []
        problems = []
        var vae: MemoryEstimate.Decoder?, tiny: MemoryEstimate.Decoder?
        for part in folder.parts {
            var r = PartReport(part: part)
            do {
                switch part.role {
                case .tokenizer:
                    r.format = part.path.hasSuffix(".json") ? "Hugging Face tokenizer.json" : "SentencePiece model"
                case .dit: try readDiT(&r, backend: backend)
                case .lora: try Self.readLoRA(&r, dit: folder.part(.dit)?.path)
                case .textEncoder: textEncoder = try Self.readTextEncoder(&r, backend: backend)
                case .vae: vae = try Self.readVAE(&r, backend: backend)
                case .tinyDecoder: tiny = try Self.readTinyDecoder(&r)
                }
            } catch {
                let message = (error as? ReelError)?.description ?? "\(error)"
                r.problem = message
                problems.append("\(part.role.rawValue) \(folder.shortName(part)): \(message)")
            }
            parts.append(r)
        }
        // LoadedModel's choice: the tiny decoder where there is one.
        decoder = tiny ?? vae
    }

    /// The device memory of streaming at `geometry` (nil without a readable DiT).
    public func estimate(geometry: BlockGeometry, schedule: StreamingSchedule = .longLive,
                         dtype: DType = .bf16, quantization: LinearQuantization? = nil,
                         kvCache: KVCacheStorage = .model) -> MemoryEstimate? {
        guard let dit, let ditReport = parts.first(where: { $0.part.role == .dit && $0.problem == nil }) else {
            return nil
        }
        return MemoryEstimate.streaming(dit: dit, ditParameters: ditReport.parameters,
                                        textEncoderParameters: textEncoder?.parameterCount, decoder: decoder,
                                        geometry: geometry, schedule: schedule, dtype: dtype, quantization: quantization,
                                        kvCache: kvCache)
    }

    /// Whether every part a video needs is there and readable.
    public var isComplete: Bool { folder.missing.isEmpty && problems.isEmpty }
}
