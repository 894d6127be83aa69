import Foundation
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
@testable import ReelPipeline
import ReelTestSupport
import Testing

/// LongLive 2.0's release folder (`LongLive-2.0-5B/model_bf16.pt`, or the unmerged generator + LoRA pair of
/// configs/inference.yaml) on a Wan2.2-TI2V-5B base, in the real file formats (`ModelFolderFixtures.wan22Folder`,
/// `longLive2ReleaseFolder`): recognised, loaded to the same DiT as the same weights in safetensors, the LoRA merged,
/// reported by `reel inspect`, and refused with a message for a missing or wrong base and a 1.0 checkpoint.
@Suite(.serialized) struct LongLive2FolderTests {
    /// The project's own GEMM: bit-exact comparisons do not depend on a BLAS's kernels.
    let backend = CPUBackend(gemm: .own)

    /// The first block's latents (8 latent frames at 64x64) of `files`' model, from one prompt and seed.
    func firstBlock(_ files: ModelFiles) async throws -> [Float] {
        let model = try LoadedModel.load(files: files, decoder: false, backend: backend)
        let geometry = try BlockGeometry(width: 64, height: 64).matching(model.dit.config)
        let pipeline = try Pipeline(model: model, request: PipelineRequest(geometry: geometry, latentFrames: 8, decode: false),
                                    prompt: try model.context(for: "a red circle moves left"), noise: PhiloxNoise(seed: 3))
        var blocks: [[Float]] = []
        for try await chunk in pipeline.chunks() { blocks.append(try chunk.block.latents.toFloats()) }
        return try #require(blocks.first)
    }

    /// The release folder beside wan_models/Wan2.2-TI2V-5B (where the reference's wrapper loads the base from): the
    /// base is found without --base, its config.json gives the heads, and the DiT equals the same bf16 weights read
    /// from a safetensors file, bit for bit (negative control: the base's own DiT differs).
    @Test func mergedCheckpointOnItsBase() async throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let base = try f.wan22Folder("wan_models/Wan2.2-TI2V-5B")
        let dir = try f.longLive2ReleaseFolder("LongLive-2.0-5B")
        let folder = try ModelFolder.recognise(dir)
        #expect(folder.kind == .longLive2 && folder.kind.needsBase)
        #expect(folder.base == base)
        #expect(folder.part(.dit)?.path == dir + "/model_bf16.pt" && folder.part(.lora) == nil)
        #expect(folder.part(.vae)?.path == base + "/Wan2.2_VAE.pth")
        #expect(folder.missing.isEmpty && folder.heads == 2)
        #expect(try folder.files.ditConfig(backend: backend).runsLongLive2)

        try f.writeSafetensors(try f.dit5BWeights(seed: 11), to: "same.safetensors", dtype: .bf16)
        var same = folder.files
        same.dit = f.path("same.safetensors")
        var other = folder.files
        other.dit = base + "/diffusion_pytorch_model.safetensors"
        let ours = try await firstBlock(folder.files)
        #expect(ours == (try await firstBlock(same)))
        #expect(ours != (try await firstBlock(other)))

        let report = ModelInspection(folder: folder, backend: backend).report(geometry: BlockGeometry(width: 64, height: 64))
        #expect(report.contains("LongLive 2.0 checkpoint") && report.contains("\"generator\" of the checkpoint"))
        #expect(report.contains("(base) Wan2.2_VAE.pth") && report.contains("missing: nothing"))
        #expect(!report.contains("problem:"), "\(report)")
    }

    /// configs/inference.yaml's unmerged pair with --base: the LoRA is found and merged at load (it changes the video).
    @Test func generatorAndLoRAWithBase() async throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let base = try f.wan22Folder("Wan2.2-TI2V-5B")
        let dir = try f.longLive2ReleaseFolder("longlive2", merged: false)
        let folder = try ModelFolder.recognise(dir, base: base)
        #expect(folder.kind == .longLive2 && folder.base == base)
        #expect(folder.part(.dit)?.path == dir + "/generator_checkpoint.pt")
        #expect(folder.part(.lora)?.path == dir + "/lora_checkpoint.pt")
        var plain = folder.files
        plain.lora = nil
        let (merged, unmerged) = (try await firstBlock(folder.files), try await firstBlock(plain))
        #expect(merged.count == unmerged.count && merged != unmerged, "the LoRA changes the video")
        let report = ModelInspection(folder: folder, backend: backend).report(geometry: BlockGeometry(width: 64, height: 64))
        #expect(report.contains("rank 4 on 20 linear layers"))
    }

    /// No base: the parts it lacks are named with the base it needs. A Wan2.1 base, or a LongLive 1.0 checkpoint
    /// under 2.0's name, is refused when the folder is recognised, naming the shapes.
    @Test func missingOrWrongBaseAndWrongShapesAreRefused() throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let dir = try f.longLive2ReleaseFolder("LongLive-2.0-5B")
        let alone = try ModelFolder.recognise(dir)
        #expect(alone.base == nil && alone.missing == [.textEncoder, .tokenizer, .vae])
        let error = try #require(throws: ReelError.self) { _ = try LoadedModel.load(files: alone.files, backend: backend) }
        #expect(error.description.contains("no text encoder") && error.description.contains("found DiT model_bf16.pt"))
        #expect(error.description.contains("Wan2.2-TI2V-5B base folder with --base DIR"))
        #expect(ModelInspection(folder: alone, backend: backend).report(geometry: BlockGeometry(width: 64, height: 64))
            .contains("give its Wan2.2-TI2V-5B base folder"))

        let wan21 = try f.wanFolder("Wan2.1-T2V-1.3B")
        let wrongBase = try #require(throws: ReelError.self) { _ = try ModelFolder.recognise(dir, base: wan21) }
        #expect(wrongBase.description.contains("in_dim 16 (the checkpoint's 48)"), "\(wrongBase)")
        #expect(wrongBase.description.contains("Wan2.2-TI2V-5B folder"))

        let base = try f.wan22Folder("Wan2.2-TI2V-5B")
        try f.writeTorch(.dict([("generator", try f.stateDict(try f.ditWeights(seed: 7), prefix: "model.", dtype: .bf16))]),
                         to: "v1/model_bf16.pt")
        let wrongModel = try #require(throws: ReelError.self) { _ = try ModelFolder.recognise(f.path("v1"), base: base) }
        #expect(wrongModel.description.contains("model.patch_embedding.weight is [64, 16, 1, 2, 2]"), "\(wrongModel)")
        #expect(wrongModel.description.contains("not LongLive 2.0's 48"))
    }
}
