import Foundation
import ReelCore
import ReelIO
import ReelModels

/// A model loaded once for any number of videos: tokenizer + umT5 + DiT behind a `PromptEncoder`,
/// and the decoder's weights, from which each video makes its own streaming decoder (a decoder keeps
/// per-video causal state; the weights are shared). Used by `reel generate` and `reel serve`.
public final class LoadedModel: PipelineModel, @unchecked Sendable {
    public let prompts: PromptEncoder
    public var dit: WanDiT { prompts.model }
    private let makeDecoder: (@Sendable () -> any VideoDecoder)?
    /// "taehv", "wan-vae" or "none".
    public let decoderName: String
    /// The decoder's multiply-add FLOPs per latent frame at a latent size (height, width), for floors.
    public let decoderFLOPs: (@Sendable (Int, Int) -> Double)?
    /// The stream every video's decoder issues its ops on (the pipeline's Decoder stage): one per
    /// model, so that its pool of freed device memory serves every video. The DiT's backend itself
    /// where the backend has no separate streams.
    public let decodeStream: any Backend
    /// Makes a streaming encoder for video and image inputs (nil: loaded without one). Its ops go to
    /// `encodeStream` (the Input stage's): by default a stream of the decoder's device of its own, or a device of
    /// its own (`load(encodeBackend:)`); its latents reach the DiT's device ordered by an event (`handedOver`).
    public let makeEncoder: (@Sendable () -> any VideoEncoder)?
    public let encodeStream: any Backend
    /// Where `load(residency:)` placed the model under `--gpu-memory` (nil: loaded without a cap to place by).
    public private(set) var placement: ModelPlacement?
    private let lock = NSLock()

    public init(prompts: PromptEncoder, decoderName: String, decodeStream: (any Backend)? = nil,
                encodeStream: (any Backend)? = nil, makeEncoder: (@Sendable () -> any VideoEncoder)? = nil,
                makeDecoder: (@Sendable () -> any VideoDecoder)?, decoderFLOPs: (@Sendable (Int, Int) -> Double)? = nil) {
        self.prompts = prompts
        self.decoderName = decoderName
        self.decodeStream = decodeStream ?? prompts.model.backend
        self.encodeStream = encodeStream ?? decodeStream ?? prompts.model.backend
        self.makeEncoder = makeEncoder
        self.makeDecoder = makeDecoder
        self.decoderFLOPs = decoderFLOPs
    }

    /// Loads the parts `files` names (`ema`: the checkpoint's EMA generator, as `files.ema`). `decoder: false` skips the decoder (latents-only output).
    /// `decodeBackend`: where the decoder's weights live and its ops run (e.g. a second GPU, so that
    /// decoding does not share the DiT's); default: a new stream of `backend`. `quantization`: the DiT's
    /// block layers in FP8 or INT8 (`WanDiT.quantized`). `kvCache`: how the DiT's self-attention caches store
    /// keys and values (`WanDiT.kvCache`). `attention`: how its self-attention computes
    /// (`WanDiT.attentionPrecision`). `encoder`: also load the encoder half of the decoder's file
    /// (the Wan VAE's, or a TAEHV file's `encoder.*`), for image and video inputs; `encodeBackend`: where the
    /// encoder's weights live and its ops run (default: a new stream of the decoder's). `communicator`: the DiT
    /// spread over its ranks by `parallelism` (`backend` must be its rank 0's stream, where the text encoder
    /// runs).
    /// `textBackend`: where the text encoder's weights live and it runs (e.g. the CPU beside a GPU DiT: no device
    /// memory for umT5, seconds per new prompt); default: `backend`.
    /// `residency`: place the model under `--gpu-memory` by `ResidencyPlan` (one device: ignored with a
    /// `communicator`): umT5 on `residency.host` when the plan says so (unless `textBackend` chose), and the DiT's
    /// last blocks loaded from the file straight into host memory (page-locked on CUDA) and streamed through device
    /// slots, so a DiT larger than the cap loads. A model that cannot fit is refused with what it needs.
    public static func load(files: ModelFiles, ema: Bool = false, decoder wantsDecoder: Bool = true, encoder wantsEncoder: Bool = false,
                            backend: any Backend, decodeBackend: (any Backend)? = nil, encodeBackend: (any Backend)? = nil,
                            communicator: (any Communicator)? = nil, parallelism: DiTParallelScheme = .sequence,
                            dtype: DType = .f32,
                            quantization: LinearQuantization? = nil, kvCache: KVCacheStorage = .model,
                            attention: AttentionPrecision = .model, textBackend: (any Backend)? = nil, residency: Residency? = nil) throws -> LoadedModel {
        if let communicator, communicator.streams[0] !== backend {
            throw ReelError.input("the DiT's first rank (\(communicator.streams[0].name)) must be the backend the text "
                                  + "encoder runs on (\(backend.name))")
        }
        guard let ditPath = files.dit else { throw files.missing(.dit, option: "--dit FILE") }
        guard let encoderPath = files.textEncoder else { throw files.missing(.textEncoder, option: "--text-encoder FILE") }
        guard let tokenizerPath = files.tokenizer else { throw files.missing(.tokenizer, option: "--tokenizer FILE") }
        if wantsDecoder && files.vae == nil && files.tinyDecoder == nil {
            throw files.missing(.vae, option: "--vae FILE or --tiny-decoder FILE")
        }
        var placement: ModelPlacement?, streaming: BlockStreaming?, textPlace = textBackend ?? backend
        if let residency, communicator == nil {
            let placed = try ModelPlacement.make(files: files, ema: ema || files.ema, decoder: wantsDecoder,
                                                 residency: residency, dtype: dtype, quantization: quantization,
                                                 kvCache: kvCache, textEncoderChosen: textPlace !== backend)
            if placed.plan.textEncoder == .cpu { textPlace = residency.host }
            if placed.plan.streamedLayers > 0 {
                streaming = BlockStreaming(first: placed.plan.residentLayers, slots: placed.plan.slots,
                                           copyStream: try backend.device.makeStream(), host: residency.host,
                                           fromMappedFile: placed.plan.streamsFromFile)
            }
            placement = placed
        }
        let tok = try Tokenizer(contentsOf: URL(fileURLWithPath: tokenizerPath))
        let textModel = try UMT5Encoder.load(from: WeightFileTensors(path: encoderPath), backend: textPlace, dtype: dtype,
                                             quantization: placement?.plan.textEncoder == .deviceFP8 ? .fp8 : nil)
        let dit = try WanDiT.load(path: ditPath, lora: files.lora, heads: files.heads, ema: ema || files.ema,
                                  backend: backend, communicator: communicator, parallelism: parallelism, dtype: dtype,
                                  quantization: quantization,
                                  streaming: streaming)
        dit.kvCache = kvCache
        if attention != .model && communicator != nil && parallelism == .tensor {
            throw ReelError.input("--attention \(attention.rawValue) does not combine with --parallelism tensor (its attention runs in the model's dtype)")
        }
        dit.attentionPrecision = attention
        if let streaming, placement?.plan.kvCacheOnHost == true {
            dit.hostKVCache = streaming.copyStream as? any HostToDeviceCopying
            dit.hostKVCacheFrom = placement?.plan.kvDeviceLayers ?? 0
        }
        let prompts = try PromptEncoder(tokenizer: tok, textEncoder: textModel, model: dit)
        let model = try loadDecoder(files: files, prompts: prompts, decoder: wantsDecoder, encoder: wantsEncoder,
                                    backend: backend, decodeBackend: decodeBackend, encodeBackend: encodeBackend, dtype: dtype)
        model.placement = placement
        return model
    }

    /// The decoder (and encoder) half of `load`.
    private static func loadDecoder(files: ModelFiles, prompts: PromptEncoder, decoder wantsDecoder: Bool,
                                    encoder wantsEncoder: Bool, backend: any Backend, decodeBackend: (any Backend)?,
                                    encodeBackend: (any Backend)?, dtype: DType) throws -> LoadedModel {
        let dit = prompts.model
        guard wantsDecoder else { return LoadedModel(prompts: prompts, decoderName: "none", makeDecoder: nil) }
        let stream = try decodeBackend ?? backend.makeStream()
        if let path = files.tinyDecoder {
            let model = UncheckedSendable(try TinyDecoder.load(from: WeightFileTensors(path: path), on: stream, dtype: dtype))
            let (channels, z, up) = (model.value.channels, model.value.latentChannels, model.value.timeUpscale)
            guard z == dit.config.outChannels else {
                throw ReelError.input("\(path) is a TAEHV of \(z) latent channels but the DiT makes \(dit.config.outChannels): "
                                      + "a Wan2.1 DiT decodes with taew2_1, a Wan2.2-TI2V-5B (LongLive 2.0) DiT with taew2_2 "
                                      + "or the Wan2.2 VAE (--vae Wan2.2_VAE.pth)")
            }
            var makeEncoder: (@Sendable () -> any VideoEncoder)?
            let encodeStream = wantsEncoder ? try encodeBackend ?? stream.makeStream() : stream
            if wantsEncoder {
                let weights = try WeightFileTensors(path: path)
                guard weights.keys.contains(where: { $0.hasPrefix("encoder.") }) else {
                    throw ReelError.input("\(path) has no encoder (no encoder.* weights): image and video inputs need one")
                }
                let encoder = UncheckedSendable(try TinyEncoder.load(from: weights, on: encodeStream, dtype: dtype))
                makeEncoder = { StreamingTAEHVEncoder(model: encoder.value) }
            }
            return LoadedModel(prompts: prompts, decoderName: "taehv", decodeStream: stream, encodeStream: encodeStream,
                               makeEncoder: makeEncoder,
                               makeDecoder: { StreamingTinyDecoder(model: model.value) },
                               decoderFLOPs: { h, w in
                                   TinyDecoder.flopsPerLatentFrame(channels: channels, latentChannels: z, height: h, width: w, timeUpscale: up)
                               })
        }
        let model = UncheckedSendable(try WanVAEDecoder.load(from: WeightFileTensors(path: files.vae!), on: stream, dtype: dtype))
        let vae = model.value.config
        guard vae.zDim == dit.config.outChannels else {
            throw ReelError.input("\(files.vae!) is a \(vae.name) (\(vae.zDim) latent channels) but the DiT makes "
                                  + "\(dit.config.outChannels): pair a Wan2.1 DiT with Wan2.1_VAE.pth, a Wan2.2-TI2V-5B DiT with Wan2.2_VAE.pth")
        }
        var makeEncoder: (@Sendable () -> any VideoEncoder)?
        let encodeStream = wantsEncoder ? try encodeBackend ?? stream.makeStream() : stream
        if wantsEncoder {
            let encoder = UncheckedSendable(try WanVAEEncoder.load(from: WeightFileTensors(path: files.vae!), on: encodeStream, dtype: dtype))
            makeEncoder = { StreamingVAEEncoder(model: encoder.value) }
        }
        return LoadedModel(prompts: prompts, decoderName: vae.isResidual ? "wan2.2-vae" : "wan-vae", decodeStream: stream,
                           encodeStream: encodeStream, makeEncoder: makeEncoder,
                           makeDecoder: { StreamingVAEDecoder(model: model.value) },
                           decoderFLOPs: { h, w in ComputeCost.vaeDecodeLatentFrame(vae, height: h, width: w) })
    }

    /// Whether `files` hold an encoder for image and video inputs: a Wan VAE file always does, a TAEHV file
    /// when it has `encoder.*` weights (reads the file's header only).
    public static func hasEncoder(_ files: ModelFiles) -> Bool {
        if let path = files.tinyDecoder {
            return (try? WeightFileTensors(path: path))?.keys.contains { $0.hasPrefix("encoder.") } ?? false
        }
        return files.vae != nil
    }

    /// A fresh streaming decoder for one video (nil when the model was loaded without one).
    public func newDecoder() -> (any VideoDecoder)? { makeDecoder?() }

    /// A fresh streaming encoder for one input (nil when the model was loaded without one).
    public func newEncoder() -> (any VideoEncoder)? { makeEncoder?() }

    /// The DiT's context for `prompt`; safe to call from several videos at once (the encoder's
    /// caches are shared, so calls are serialized).
    public func context(for prompt: String) throws -> WanDiT.PromptContext {
        try lock.withLock { try prompts.context(for: prompt) }
    }
}
