import Foundation
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
@testable import ReelPipeline
import Testing

/// `--model DIR` on the folders people download (built by `ModelFolderFixtures` with random weights of a
/// tiny architecture in the real formats and key layouts): recognition, a load and a short CPU video,
/// `reel inspect`'s report, and the errors for missing and corrupt parts.
@Suite(.serialized) struct ModelFolderTests {
    let backend = CPUBackend()

    /// Loads `files` and generates one block at 32x32; returns the model and the frames' count.
    func generate(_ files: ModelFiles) async throws -> (LoadedModel, Int) {
        let model = try LoadedModel.load(files: files, backend: backend)
        var frames = 0
        for chunk in try await run(model, decode: true) {
            let video = try #require(chunk.frames)
            #expect(video.width == 32 && video.height == 32)
            frames += video.count
        }
        return (model, frames)
    }

    func run(_ model: LoadedModel, decode: Bool) async throws -> [VideoChunk] {
        let prompt = try model.context(for: "a red circle moves left on a blue background")
        let request = PipelineRequest(geometry: BlockGeometry(width: 32, height: 32), latentFrames: 3, decode: decode)
        let pipeline = try Pipeline(model: model, request: request, prompt: prompt, noise: PhiloxNoise(seed: 3))
        var chunks: [VideoChunk] = []
        for try await chunk in pipeline.chunks() { chunks.append(chunk) }
        return chunks
    }

    func inspection(_ folder: ModelFolder) -> ModelInspection { ModelInspection(folder: folder, backend: backend) }

    @Test func wanFolderSingleFile() async throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let dir = try f.wanFolder("Wan2.1-T2V-1.3B")
        let folder = try ModelFolder.recognise(dir)
        #expect(folder.kind == .wan)
        #expect(folder.missing.isEmpty)
        #expect(folder.part(.dit)?.path == dir + "/diffusion_pytorch_model.safetensors")
        #expect(folder.part(.textEncoder)?.path == dir + "/models_t5_umt5-xxl-enc-bf16.pth")
        #expect(folder.part(.tokenizer)?.path == dir + "/google/umt5-xxl/tokenizer.json")
        #expect(folder.part(.vae)?.path == dir + "/Wan2.1_VAE.pth")
        #expect(folder.heads == 2)   // config.json's num_heads; dim / 128 would give 0
        let (model, frames) = try await generate(folder.files)
        #expect(model.dit.config.heads == 2 && model.dit.config.layers == 2 && model.decoderName == "wan-vae")
        #expect(frames == 9)   // the first latent frame gives 1 video frame, the next two 4 each
        let report = inspection(folder).report(geometry: BlockGeometry(width: 832, height: 480))
        #expect(report.contains("Wan2.1 (Wan-AI layout)"))
        #expect(report.contains("dim 64, 2 layers, 2 heads x 32, ffn 128, text dim 32"))
        #expect(report.contains("PyTorch checkpoint") && report.contains("bf16"))
        #expect(report.contains("umT5: dim 32, 2 layers, 2 heads x 16, ffn 64, vocabulary 384"))
        #expect(report.contains("missing: nothing"))
        #expect(report.contains("KV cache") && report.contains("1560 tokens"))
    }

    @Test func wanFolderSharded() async throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let dir = try f.wanFolder("Wan2.1-T2V-14B", sharded: true)
        let folder = try ModelFolder.recognise(dir)
        #expect(folder.kind == .wan)
        #expect(folder.part(.dit)?.path == dir + "/diffusion_pytorch_model.safetensors.index.json")
        let inspected = inspection(folder)
        #expect(inspected.problems.isEmpty)
        #expect(inspected.parts.first { $0.part.role == .dit }?.format == "sharded index (2 shards)")
        let model = try LoadedModel.load(files: folder.files, decoder: false, backend: backend)
        #expect(model.dit.config.dim == 64)
        // A shard missing: the index names it.
        try FileManager.default.removeItem(atPath: dir + "/diffusion_pytorch_model-00002-of-00002.safetensors")
        let broken = inspection(try ModelFolder.recognise(dir))
        #expect(broken.problems.contains { $0.contains("shard 'diffusion_pytorch_model-00002-of-00002.safetensors'") })
        #expect(broken.estimate(geometry: BlockGeometry(width: 64, height: 64)) == nil)
    }

    @Test func diffusersFolder() async throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let dir = try f.diffusersFolder("Wan2.1-T2V-1.3B-Diffusers")
        let folder = try ModelFolder.recognise(dir)
        #expect(folder.kind == .diffusers)
        #expect(folder.missing.isEmpty)
        #expect(folder.part(.dit)?.path == dir + "/transformer")
        #expect(folder.part(.textEncoder)?.path == dir + "/text_encoder")
        #expect(folder.part(.tokenizer)?.path == dir + "/tokenizer/tokenizer.json")
        #expect(folder.part(.vae)?.path == dir + "/vae")
        #expect(folder.heads == 2)   // transformer/config.json's num_attention_heads
        let (model, frames) = try await generate(folder.files)
        #expect(model.dit.config.heads == 2 && model.decoderName == "wan-vae" && frames == 9)
        let report = inspection(folder).report(geometry: BlockGeometry(width: 64, height: 64))
        #expect(report.contains("diffusers key names") && report.contains("transformers key names"))
        #expect(report.contains("missing: nothing"))
    }

    /// LongLive's folder beside wan_models/Wan2.1-T2V-1.3B, as LongLive's instructions download them:
    /// the base is found without --base; the LoRA is merged (the DiT differs from the base checkpoint's).
    @Test func longLiveOnItsBase() async throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let base = try f.wanFolder("wan_models/Wan2.1-T2V-1.3B")
        let dir = try f.longLiveFolder("longlive_models")
        let folder = try ModelFolder.recognise(dir)
        #expect(folder.kind == .longLive)
        #expect(folder.base == base)
        #expect(folder.part(.dit)?.path == dir + "/models/longlive_base.pt")
        #expect(folder.part(.lora)?.path == dir + "/models/lora.pt")
        #expect(folder.part(.textEncoder)?.folder == folder.base)
        #expect(folder.missing.isEmpty && !folder.files.ema)
        let (model, frames) = try await generate(folder.files)
        #expect(frames == 9 && model.dit.config.heads == 2)   // heads from the base's config.json
        var plain = folder.files
        plain.lora = nil
        let unmerged = try LoadedModel.load(files: plain, decoder: false, backend: backend)
        let merged = try LoadedModel.load(files: folder.files, decoder: false, backend: backend)
        let a = try await run(merged, decode: false)[0].block.latents.toFloats()
        let b = try await run(unmerged, decode: false)[0].block.latents.toFloats()
        #expect(a.count == b.count && a != b, "the LoRA changes the video")
        let report = inspection(folder).report(geometry: BlockGeometry(width: 832, height: 480))
        #expect(report.contains("LongLive checkpoint") && report.contains("\"generator\" of the checkpoint"))
        #expect(report.contains("rank 4 on 20 linear layers"))
        #expect(report.contains("(base) models_t5_umt5-xxl-enc-bf16.pth"))
        // Pointed at models/ inside, the base is still found; pointed at wan_models/, it names the folder inside.
        #expect(try ModelFolder.recognise(dir + "/models").base == base)
        let above = try ModelFolder.recognise(f.path("wan_models"))
        #expect(above.modelFoldersInside == ["Wan2.1-T2V-1.3B"])
        #expect(inspection(above).report(geometry: BlockGeometry(width: 64, height: 64))
            .contains("model folders inside: Wan2.1-T2V-1.3B"))
    }

    @Test func longLiveWithoutBaseSaysSo() throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let dir = try f.longLiveFolder("longlive_models")
        let folder = try ModelFolder.recognise(dir)
        #expect(folder.missing == [.textEncoder, .tokenizer, .vae])
        let error = try #require(throws: ReelError.self) { _ = try LoadedModel.load(files: folder.files, backend: backend) }
        #expect(error.description.contains("no text encoder"))
        #expect(error.description.contains("found DiT models/longlive_base.pt, LoRA models/lora.pt"))
        #expect(error.description.contains("--base DIR"))
        #expect(!inspection(folder).isComplete)
    }

    /// Self-Forcing's checkpoint with --base: the EMA generator is the one loaded (its README runs --use_ema),
    /// the tiny decoder from checkpoints/taew2_1.pth.
    @Test func selfForcingWithBase() async throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let base = try f.wanFolder("Wan2.1-T2V-1.3B")
        let dir = try f.selfForcingFolder("Self-Forcing")
        let folder = try ModelFolder.recognise(dir, base: base)
        #expect(folder.kind == .selfForcing && folder.files.ema)
        #expect(folder.part(.dit)?.path == dir + "/checkpoints/self_forcing_dmd.pt")
        #expect(folder.part(.tinyDecoder)?.path == dir + "/checkpoints/taew2_1.pth")
        let (source, _) = try WanDiT.openCheckpoint(path: dir + "/checkpoints/self_forcing_dmd.pt", ema: folder.files.ema)
        let ema = try WeightFiles.open(dir + "/checkpoints/self_forcing_dmd.pt")
            .tensor("generator_ema.model.head.head.weight", on: backend, as: .f32).toFloats()
        #expect(try source.load("model.head.head.weight", on: backend, as: .f32).toFloats() == ema)
        let (model, frames) = try await generate(folder.files)
        #expect(model.decoderName == "taehv" && frames == 9)
        // Another Self-Forcing checkpoint name is found by its "generator" entries.
        let other = try f.selfForcingFolder("sid", checkpoint: "self_forcing_sid.pt")
        #expect(try ModelFolder.recognise(other, base: base).part(.dit)?.path == other + "/checkpoints/self_forcing_sid.pt")
    }

    @Test func causVidWithBase() async throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let base = try f.wanFolder("Wan2.1-T2V-1.3B")
        let dir = try f.causVidFolder("autoregressive_checkpoint")
        let folder = try ModelFolder.recognise(dir, base: base)
        #expect(folder.kind == .causVid && !folder.files.ema && folder.missing.isEmpty)
        let (_, frames) = try await generate(folder.files)
        #expect(frames == 9)
    }

    /// The one resolution path: the folder, then single files on top (what --dit, --vae, --heads give).
    @Test func singleFilesOverrideTheFolder() throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let dir = try f.wanFolder("wan")
        let files = try ModelFiles.resolve(model: dir, given: ModelFiles(vae: "/elsewhere/vae.safetensors", heads: 4))
        #expect(files.vae == "/elsewhere/vae.safetensors" && files.heads == 4)
        #expect(files.dit == dir + "/diffusion_pytorch_model.safetensors" && files.origin?.kind == .wan)
        let sf = try f.selfForcingFolder("sf")
        #expect(try ModelFiles.resolve(model: sf, base: dir).ema)
    }

    /// Reel's own layout keeps working: the shipped tiny model.
    @Test func reelFolder() throws {
        let folder = try ModelFolder.recognise(ModelFolderFixtures.tokenizerFolder.path)
        #expect(folder.kind == .reel && folder.missing.isEmpty)
        #expect(folder.heads == 3 && folder.size == "128x128" && folder.fps == 16)
        #expect(folder.part(.tinyDecoder) != nil && folder.part(.vae) == nil)
    }

    @Test func missingAndCorruptParts() throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let dir = try f.wanFolder("wan")
        // A truncated VAE: recognised by name, unreadable, and the load names the file.
        let vae = dir + "/Wan2.1_VAE.pth"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: vae))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: vae))
        let folder = try ModelFolder.recognise(dir)
        let inspected = inspection(folder)
        #expect(!inspected.isComplete)
        #expect(inspected.problems.contains { $0.contains("VAE Wan2.1_VAE.pth") })
        #expect(inspected.report(geometry: BlockGeometry(width: 64, height: 64)).contains("UNREADABLE"))
        let error = try #require(throws: ReelError.self) { _ = try LoadedModel.load(files: folder.files, backend: backend) }
        #expect(error.description.contains("Wan2.1_VAE.pth"))
        // No tokenizer: the message says what was found and what to give.
        try FileManager.default.removeItem(atPath: dir + "/google")
        let noTokenizer = try ModelFolder.recognise(dir)
        #expect(noTokenizer.missing == [.tokenizer])
        let missing = try #require(throws: ReelError.self) { _ = try LoadedModel.load(files: noTokenizer.files, backend: backend) }
        #expect(missing.description.contains("no tokenizer in \(dir) (Wan2.1 (Wan-AI layout)): found DiT diffusion_pytorch_model.safetensors"))
        #expect(missing.description.contains("google/umt5-xxl/tokenizer.json"))
        #expect(inspection(noTokenizer).report(geometry: BlockGeometry(width: 64, height: 64)).contains("missing: tokenizer"))
        // config.json that disagrees with the weights.
        try f.writeJSON(["num_heads": 2, "num_layers": 30, "dim": 64], to: "wan/config.json")
        #expect(inspection(try ModelFolder.recognise(dir)).problems.contains("config.json says layers 30, the DiT's weights have 2"))
        // Not a folder, and a folder with nothing Reel reads.
        #expect(throws: ReelError.self) { _ = try ModelFolder.recognise(dir + "/config.json") }
        #expect(throws: ReelError.self) { _ = try ModelFolder.recognise(dir + "/nothing") }
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        let empty = try ModelFolder.recognise(dir + "/empty")
        #expect(empty.kind == .parts && empty.missing == [.dit, .textEncoder, .tokenizer, .vae])
    }

    /// The estimate against what `reel bench` measured on an H100/H200 for the 1.3B model at 480x832 in
    /// bf16 with the Wan VAE (docs/perf-notes.md: peak 9.57-9.58 GB, DiT only 6.93 GB; the bench encodes
    /// no prompt, so the text encoder is left out). docs/model-folders.md discusses the gap.
    @Test func estimateMatchesMeasuredPeaks() throws {
        let c = WanDiTConfig.wan1_3B
        let ditParameters = WanDiT.weightShapes(c).reduce(0) { $0 + $1.1.count }
        let vaeParameters = WanVAEDecoder.weightShapes(.wan21).reduce(0) { $0 + $1.1.count }
        let g = BlockGeometry(width: 832, height: 480)
        let full = MemoryEstimate.streaming(dit: c, ditParameters: ditParameters, textEncoderParameters: UMT5Config.xxl.parameterCount,
                                            decoder: .wanVAE(.wan21, parameters: vaeParameters), geometry: g)
        let ditOnly = MemoryEstimate.streaming(dit: c, ditParameters: ditParameters, textEncoderParameters: nil, decoder: nil, geometry: g)
        let fp8 = MemoryEstimate.streaming(dit: c, ditParameters: ditParameters, textEncoderParameters: nil,
                                           decoder: .wanVAE(.wan21, parameters: vaeParameters), geometry: g, quantization: .fp8(.feedForward))
        #expect(abs(fp8.total - 8.72e9) / 8.72e9 < 0.10, "\(fp8.total / 1e9) GB")   // README: --fp8 peak 8.72 GB
        let kv = try #require(full.items.first { $0.name == "KV cache" })
        #expect(abs(kv.bytes - 3.45e9) < 0.01e9)                                   // REFERENCE.md: ~3.45 GB
        // --kv-cache fp8: 1 B a value and a 4 B scale per (token, head) row of 128, plus one layer's bf16 K,V scratch.
        let kv8 = try #require(MemoryEstimate.streaming(dit: c, ditParameters: ditParameters, textEncoderParameters: nil,
                                                        decoder: nil, geometry: g, kvCache: .fp8).items.first { $0.name == "KV cache" })
        #expect(kv8.bytes == Double(30 * 2 * 12 * 1560 * 12 * (128 + 4) + 2 * 12 * 1560 * 1536 * 2))   // 1.89 GB
        #expect(abs(full.items[0].bytes - 2.84e9) < 0.01e9)                       // perf-notes: DiT weights 2.84 GB
        // The Wan VAE's largest transient: stage 1's resample (4 frames after its time upsampling) holds its input
        // [4, 120, 208, 384], the nearest x2 copy [4, 240, 416, 384] (306.7 MB, the allocation that passed a 14B
        // bench's cap when only stage outputs were counted) and the conv's output [4, 240, 416, 192] at once.
        // --int8: cuBLASLt's int32 sums of the FFN's up projection (4680 queries x 8960) on top of FP8's activations.
        let int8 = MemoryEstimate.streaming(dit: c, ditParameters: ditParameters, textEncoderParameters: nil, decoder: nil,
                                            geometry: g, quantization: .int8(.feedForward))
        let fp8Only = MemoryEstimate.streaming(dit: c, ditParameters: ditParameters, textEncoderParameters: nil, decoder: nil,
                                               geometry: g, quantization: .fp8(.feedForward))
        #expect(int8.total - fp8Only.total == Double(4680 * 8960 * 4))
        let vae = try #require(full.items.first { $0.name == "Wan VAE activations" })
        #expect(vae.bytes == Double(4 * 120 * 208 * (384 + 4 * 384 + 4 * 192) * 2))   // 0.54 GB
        #expect(abs(full.withoutTextEncoder - 9.57e9) / 9.57e9 < 0.10, "\(full.withoutTextEncoder / 1e9) GB")
        #expect(abs(ditOnly.total - 6.93e9) / 6.93e9 < 0.10, "\(ditOnly.total / 1e9) GB")
        #expect(abs(Double(UMT5Config.xxl.parameterCount) - 5.68e9) < 0.05e9)    // umT5-XXL's encoder
        let c14 = WanDiTConfig.wan14B
        let big = MemoryEstimate.streaming(dit: c14, ditParameters: WanDiT.weightShapes(c14).reduce(0) { $0 + $1.1.count },
                                           textEncoderParameters: UMT5Config.xxl.parameterCount,
                                           decoder: .wanVAE(.wan21, parameters: vaeParameters), geometry: g)
        print(String(format: "14B at 832x480 bf16: estimate %.2f GB with the Wan VAE, %.2f GB with the text encoder",
                     big.withoutTextEncoder / 1e9, big.total / 1e9))
        print(String(format: "1.3B at 832x480 bf16: estimate %.2f GB with the Wan VAE (measured 9.57), %.2f GB DiT only (6.93), "
                     + "%.2f GB with the text encoder, %.2f GB with the FFN in FP8 (8.72)", full.withoutTextEncoder / 1e9,
                     ditOnly.total / 1e9, full.total / 1e9, fp8.total / 1e9))
    }
}
