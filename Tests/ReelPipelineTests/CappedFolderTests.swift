import Foundation
import ReelCore
import ReelCPU
import ReelModels
@testable import ReelPipeline
import ReelTestSupport
import Testing

/// `--gpu-memory` on a model folder (`LoadedModel.load(residency:)`): the shipped tiny model (`Models/tiny`, the
/// real safetensors format, 8 blocks) under a cap that sends the text encoder to the CPU and streams the DiT's last
/// blocks from host memory makes the same video, bit for bit, as the uncapped model, and the cap is never passed
/// (the CPU backend's `MemoryBudget` throws past it); a cap too small is refused with what the model needs.
/// Weights in bf16, so that they are copies the budget counts (float32 safetensors on the CPU map the file and do
/// not count). Reel's own GEMM (`.own`) on both sides, so no BLAS kernel choice enters.
@Suite(.serialized) struct CappedFolderTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Models/tiny").path
    static let geometry = BlockGeometry(width: 64, height: 64)

    static func backend(cap: Int) -> (CPUBackend, MemoryBudget) {
        let budget = MemoryBudget(cap: cap, device: "cpu")
        return (CPUBackend(threads: 2, gemm: .own, memoryBudget: budget), budget)
    }

    static func residency(cap: Int) -> Residency {
        Residency(cap: cap, slots: 2, geometry: geometry, host: CPUBackend(threads: 2, gemm: .own))
    }

    /// 5 blocks (15 latent frames: the 12-frame window fills and wraps), a prompt switch at latent frame 6 (a
    /// recache), decoded: the latents and the frames' bytes.
    static func video(_ model: LoadedModel, seed: UInt64 = 3) async throws -> (latents: [[Float]], pixels: [[UInt8]]) {
        let first = try model.context(for: "a red circle moves left on a blue background")
        let second = try model.context(for: "a large green square bounces around on a white background")
        let request = PipelineRequest(geometry: geometry, latentFrames: 15, decode: true)
        let pipeline = try Pipeline(model: model, request: request, prompt: first, noise: PhiloxNoise(seed: seed)) { frame in
            frame == 6 ? second : nil
        }
        var latents: [[Float]] = [], pixels: [[UInt8]] = []
        for try await chunk in pipeline.chunks() {
            if chunk.endsBlock { latents.append(try chunk.block.latents.toFloats()) }
            pixels.append(try #require(chunk.frames).pixels)
        }
        return (latents, pixels)
    }

    /// What the plan needs for the tiny model at `geometry`, from the files' headers.
    static func placement(cap: Int = 1 << 40) throws -> ModelPlacement {
        try ModelPlacement.make(files: try ModelFiles(folder: folder), ema: false, decoder: true,
                                residency: residency(cap: cap), dtype: .bf16, quantization: nil, kvCache: .model,
                                textEncoderChosen: false)
    }

    @Test func streamedFolderEqualsUncappedBitForBit() async throws {
        let files = try ModelFiles(folder: Self.folder)
        let (plain, plainBudget) = Self.backend(cap: 1 << 40)
        let uncapped = try await Self.video(try LoadedModel.load(files: files, backend: plain, dtype: .bf16))

        // Room for the fixed part and 4 blocks: the text encoder leaves, 2 blocks stay, 6 stream through 2 slots.
        // The CPU backend holds more than the estimate (made for the GPU's kernels) counts: the uncapped video's
        // excess, and a tenth more, is kept back from the plan (`Residency.reserve`); the budget still stops at `cap`.
        let estimate = try Self.placement().estimate(Self.geometry)
        let dit = try Self.placement().plan.layerBytes
        let reserve = max(0, plainBudget.peak - Int(estimate.total)) * 11 / 10
        let cap = Int(estimate.withoutTextEncoder - 4 * dit) + reserve
        let (capped, budget) = Self.backend(cap: cap)
        let model = try LoadedModel.load(files: files, backend: capped, dtype: .bf16,
                                         residency: Residency(cap: cap, geometry: Self.geometry,
                                                              host: CPUBackend(threads: 2, gemm: .own), reserve: reserve))
        let plan = try #require(model.placement?.plan)
        #expect(plan.textEncoder == .cpu && plan.residentLayers == 2 && plan.streamedLayers == 6 && plan.slots == 2,
                "\(plan.description)")
        #expect(model.prompts.textEncoder.backend !== capped)
        let stats = try #require(model.dit.weightStreaming)
        #expect(stats.firstLayer == 2 && stats.layers == 6 && stats.slots == 2)
        let video = try await Self.video(model)
        #expect(video.latents.count == 5 && video.pixels.count == uncapped.pixels.count)
        #expect(video.latents == uncapped.latents)
        #expect(video.pixels == uncapped.pixels)
        // The cap held (an allocation past it throws), and streaming lowered the device memory the video took.
        #expect(budget.peak <= cap)
        #expect(budget.peak < plainBudget.peak, "capped \(budget.peak) B, uncapped \(plainBudget.peak) B")
        print("capped folder: peak \(budget.peak) B under a cap of \(cap) B (\(reserve) B kept back); uncapped peak "
              + "\(plainBudget.peak) B; \(plan.description)")
        #expect(try #require(model.dit.weightStreaming).bytesUploaded > 0)
        // Negative control: the comparison sees a change (another seed's video differs).
        let other = try await Self.video(model, seed: 4)
        #expect(other.latents != uncapped.latents)
    }

    @Test func aCapTooSmallIsRefusedWithWhatItNeeds() throws {
        let files = try ModelFiles(folder: Self.folder)
        let (backend, _) = Self.backend(cap: 100_000)
        let error = try #require(throws: ReelError.self) {
            _ = try LoadedModel.load(files: files, backend: backend, residency: Self.residency(cap: 100_000))
        }
        let message = error.description
        #expect(message.contains("cannot hold this request"), "\(message)")
        #expect(message.contains("every DiT block streamed through 2 slots and the text encoder on the CPU"), "\(message)")
        #expect(message.contains("KV cache") && message.contains("raise --gpu-memory"), "\(message)")
    }

    /// A larger video than the plan was made for is checked against the placement: refused with what it needs.
    @Test func aLargerSizeThanThePlanIsRefused() throws {
        let estimate = try Self.placement().estimate(Self.geometry)
        let cap = Int(estimate.withoutTextEncoder)
        let placement = try Self.placement(cap: cap)
        #expect(placement.plan.textEncoder == .cpu && placement.plan.streamedLayers == 0)
        try placement.check(Self.geometry)
        try placement.check(BlockGeometry(width: 32, height: 32))
        let error = try #require(throws: ReelError.self) { try placement.check(BlockGeometry(width: 512, height: 512)) }
        #expect(error.description.contains("cannot hold a 512x512 video"), "\(error.description)")
        #expect(error.description.contains("it needs") && error.description.contains("KV cache"), "\(error.description)")
    }

    /// Host memory short (`Residency.hostMemory` 0): the streamed blocks stream from the memory-mapped weight file
    /// through a bounce buffer per slot, with no host copy, and the video is the same bit for bit. The tiny model's
    /// file stores float32, the run's dtype here; in bf16 the blocks would be converted copies, which is refused.
    @Test func streamedFromTheMappedFileEqualsUncapped() async throws {
        let files = try ModelFiles(folder: Self.folder)
        let (plain, plainBudget) = Self.backend(cap: 1 << 40)
        let uncapped = try await Self.video(try LoadedModel.load(files: files, backend: plain))
        let placement = try ModelPlacement.make(files: files, ema: false, decoder: true, residency: Self.residency(cap: 1 << 40),
                                                dtype: .f32, quantization: nil, kvCache: .model, textEncoderChosen: false)
        let estimate = placement.estimate(Self.geometry)
        // Float32 weights map the file and do not count on the CPU: a generous reserve, the plan still streams 6.
        let reserve = 2 * plainBudget.peak
        let cap = Int(estimate.withoutTextEncoder - 4 * placement.plan.layerBytes) + reserve
        let (capped, budget) = Self.backend(cap: cap)
        func residency() -> Residency {
            Residency(cap: cap, geometry: Self.geometry, host: CPUBackend(threads: 2, gemm: .own), reserve: reserve,
                      hostMemory: 0)
        }
        let model = try LoadedModel.load(files: files, backend: capped, residency: residency())
        let plan = try #require(model.placement?.plan)
        #expect(plan.streamsFromFile && plan.streamedLayers == 6, "\(plan.description)")
        #expect(plan.description.contains("streamed from the memory-mapped weight file"))
        let stats = try #require(model.dit.weightStreaming)
        #expect(stats.fromMappedFile && stats.layers == 6)
        let video = try await Self.video(model)
        #expect(video.latents.count == 5)
        #expect(video.latents == uncapped.latents)
        #expect(video.pixels == uncapped.pixels)
        #expect(budget.peak <= cap)
        // bf16 from a float32 file: the blocks would be converted copies, not the file's bytes.
        let bf16 = try Self.placement()
        let bf16Cap = Int(bf16.estimate(Self.geometry).withoutTextEncoder - 4 * bf16.plan.layerBytes) + reserve
        let error = try #require(throws: ReelError.self) {
            _ = try LoadedModel.load(files: files, backend: Self.backend(cap: bf16Cap).0, dtype: .bf16,
                                     residency: Residency(cap: bf16Cap, geometry: Self.geometry, host: CPUBackend(threads: 2),
                                                          reserve: reserve, hostMemory: 0))
        }
        #expect(error.description.contains("mapped weight file"), "\(error.description)")
    }

    /// A cap that holds the model with umT5 in FP8 but not in bf16: umT5 loads on the device with its linears in FP8
    /// (block by block, under the cap), not on the CPU.
    @Test func theTextEncoderLoadsInFP8OnTheDeviceWhenThatFits() throws {
        let files = try ModelFiles(folder: Self.folder)
        let placement = try Self.placement()
        let inBF16 = try #require(placement.plan.estimate.items.first { $0.isTextEncoder }).bytes
        let e = placement.estimate(Self.geometry)
        let config = try UMT5Encoder.detectConfig(from: WeightFileTensors(path: try #require(files.textEncoder)),
                                                  backend: CPUBackend())
        let bytes = ResidencyPlan.textEncoderFP8Bytes(config, parameters: config.parameterCount, dtype: .bf16)
        #expect(bytes < inBF16)
        let cap = Int(e.withoutTextEncoder + bytes) + 1
        let (backend, budget) = Self.backend(cap: cap)
        let model = try LoadedModel.load(files: files, backend: backend, dtype: .bf16, residency: Self.residency(cap: cap))
        let plan = try #require(model.placement?.plan)
        #expect(plan.textEncoder == .deviceFP8 && plan.streamedLayers == 0, "\(plan.description)")
        #expect(model.prompts.textEncoder.backend === backend && model.prompts.textEncoder.quantization == .fp8)
        #expect(budget.peak <= cap)
    }
}
