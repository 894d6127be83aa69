import Foundation
import ReelCore
import ReelCPU
import ReelIO
import ReelMedia
import ReelTestSupport
import ReelModels
@testable import ReelPipeline
import Testing

/// A LongLive 2.0 model (48-channel DiT, Wan2.2 VAE) behind `Pipeline`, from a model folder in the real formats
/// (`ModelFolderFixtures.longLive2Folder`): the pipeline runs `LongLive2Generator`'s schedule bit for bit, prompt
/// switches change only the blocks from theirs on, a scene cut is a prompt with 2.0's prefix, an image is the first
/// frame, the Wan2.2 VAE decodes, and LongLive 1.0's options are refused for it (and 2.0's for a 1.0 model).
@Suite(.serialized) struct LongLive2PipelineTests {
    /// One process, one backend, the project's own GEMM: bit-exact comparisons do not depend on a BLAS's kernels.
    let backend = CPUBackend(gemm: .own)
    static let size = BlockGeometry(width: 64, height: 64)
    static let cut = LongLive2Schedule.sceneCutPrefix + "a lighthouse on a cliff at dusk"

    func withModel<T>(decoder: Bool = false, encoder: Bool = false,
                      _ body: (LoadedModel, BlockGeometry) async throws -> T) async throws -> T {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let dir = try f.longLive2Folder("LongLive2-tiny")
        let files = try ModelFiles(folder: dir)
        let model = try LoadedModel.load(files: files, decoder: decoder, encoder: encoder, backend: backend)
        #expect(try files.ditConfig(backend: backend).runsLongLive2)
        return try await body(model, try Self.size.matching(model.dit.config))
    }

    /// The pipeline's latents, per block.
    func run(_ model: LoadedModel, _ request: PipelineRequest, seed: UInt64 = 5,
             script: PromptScript? = nil) async throws -> [[Float]] {
        let pipeline = try Pipeline(model: model, request: request, prompt: try model.context(for: "a red circle moves left"),
                                    noise: PhiloxNoise(seed: seed), script: script)
        #expect(pipeline.generator is LongLive2BlockGenerator)
        var blocks: [[Float]] = []
        for try await chunk in pipeline.chunks() { blocks.append(try chunk.block.latents.toFloats()) }
        return blocks
    }

    @Test func geometryAndPromptMarks() async throws {
        try await withModel { model, geometry in
            #expect(geometry.latentFramesPerBlock == 8 && geometry.latentHeight == 4 && geometry.spatialStride == 16)
            #expect(geometry.videoFrames(ofBlock: 0) == 29 && geometry.videoFrames(ofBlock: 1) == 32)
            let (cut, plain) = (try model.context(for: Self.cut), try model.context(for: "a lighthouse on a cliff at dusk"))
            #expect(cut.startsShot && !plain.startsShot)
            // A 1.0 DiT keeps its geometry.
            let wan = try Self.size.matching(ModelFolderFixtures.dit)
            #expect(wan == Self.size)
        }
    }

    /// `--kv-cache fp8` is LongLive 1.0's ring cache only: LongLive 2.0's generator refuses it, naming the option.
    @Test func fp8KVCacheIsRefused() async throws {
        try await withModel { model, _ in
            let dit = model.dit.withTextLength(model.dit.config.textLength).withKVCache(.fp8)   // a copy: model.dit stays
            do {
                _ = try LongLive2Generator(model: dit, latentHeight: 4, latentWidth: 4, noise: PhiloxNoise(seed: 5))
                Issue.record("LongLive 2.0's generator accepted an FP8 KV cache")
            } catch {
                #expect("\(error)".contains("--kv-cache fp8"), "\(error)")
            }
        }
    }

    /// The pipeline equals `LongLive2Generator` run directly (same noise, prompts, scene cut), bit for bit, over
    /// three blocks: a plain switch at block 1 and a scene cut at block 2. Negative control: the same direct run
    /// without the scene cut differs at block 2 only.
    @Test func pipelineEqualsTheGeneratorRunDirectly() async throws {
        try await withModel { model, geometry in
            let texts = ["a red circle moves left", "a blue square moves right", Self.cut]
            let contexts = UncheckedSendable(try texts.map { try model.context(for: $0) })
            let ours = try await run(model, PipelineRequest(geometry: geometry, latentFrames: 24, decode: false)) { frame in
                frame == 8 ? contexts.value[1] : frame == 16 ? contexts.value[2] : nil
            }
            func direct(sceneCut: Bool) throws -> [[Float]] {
                let g = try LongLive2Generator(model: model.dit, latentHeight: 4, latentWidth: 4, noise: PhiloxNoise(seed: 5))
                return try (0..<3).map { try g.nextBlock(prompt: contexts.value[$0], sceneCut: sceneCut && $0 == 2).toFloats() }
            }
            let reference = try direct(sceneCut: true)
            #expect(ours.count == 3)
            #expect(ours == reference)
            let noCut = try direct(sceneCut: false)
            #expect(noCut[0] == reference[0] && noCut[1] == reference[1] && noCut[2] != reference[2])
        }
    }

    /// The clean pass deferred to the next block's start (the default: the latents leave before it) gives the same
    /// latents, bit for bit, as running it before the block returns (the reference's order), over 4 blocks with a
    /// switch at block 1 and a scene cut at block 2 (whose pin now happens at block 3's start). Negative control:
    /// a generator whose deferred clean pass of block 2 is lost (no keys for it, no pin) differs from block 3.
    @Test func deferredCleanPassGivesTheSameLatents() async throws {
        try await withModel { model, _ in
            let texts = ["a red circle moves left", "a blue square moves right", Self.cut, Self.cut]
            let contexts = try texts.map { try model.context(for: $0) }
            let blocks = try await offThePool { () throws -> [[[Float]]] in
                try [true, false].map { defers in
                    let g = try LongLive2Generator(model: model.dit, latentHeight: 4, latentWidth: 4, noise: PhiloxNoise(seed: 5))
                    g.defersCleanPass = defers
                    return try (0..<4).map { b in
                        let latents = try g.nextBlock(prompt: contexts[b], sceneCut: b == 2).toFloats()
                        #expect(g.hasPendingCleanPass == defers)
                        return latents
                    }
                }
            }
            #expect(blocks[0] == blocks[1])
            let lost = try await offThePool { () throws -> [[Float]] in
                let g = try LongLive2Generator(model: model.dit, latentHeight: 4, latentWidth: 4, noise: PhiloxNoise(seed: 5))
                return try (0..<4).map { b in
                    let latents = try g.nextBlock(prompt: contexts[b], sceneCut: b == 2).toFloats()
                    if b == 2 { g.dropPendingCleanPass() }
                    return latents
                }
            }
            #expect(Array(lost.prefix(3)) == Array(blocks[0].prefix(3)) && lost[3] != blocks[0][3])
        }
    }

    /// Guidance and the shot clean recache through the pipeline equal the generator run directly with them (the
    /// negative prompt encoded by the pipeline's text encoder), bit for bit, over 4 blocks with a scene cut at block 2;
    /// a scale of 1 is no guidance at all. Negative controls: guidance 3 changes every block; the clean recache
    /// changes block 3 only (block 2's steps ran before its clean pass forgot block 1; block 0 is the global sink).
    @Test func guidanceAndCleanRecacheMatchTheGenerator() async throws {
        try await withModel { model, geometry in
            let texts = ["a red circle moves left", "a blue square moves right", Self.cut, "a lighthouse on a cliff at dusk"]
            let contexts = UncheckedSendable(try texts.map { try model.context(for: $0) })
            let negative = try model.context(for: "blurry, static")
            func pipeline(_ guidance: PipelineRequest.Guidance?, clean: Bool) async throws -> [[Float]] {
                var schedule = LongLive2Schedule.longLive2
                schedule.shotCleanRecache = clean
                return try await run(model, PipelineRequest(geometry: geometry, latentFrames: 32, decode: false,
                                                            longLive2Schedule: schedule, guidance: guidance)) { frame in
                    frame == 8 ? contexts.value[1] : frame == 16 ? contexts.value[2] : frame == 24 ? contexts.value[3] : nil
                }
            }
            func direct(scale: Float?, clean: Bool) throws -> [[Float]] {
                var schedule = LongLive2Schedule.longLive2
                schedule.shotCleanRecache = clean
                let g = try LongLive2Generator(model: model.dit, latentHeight: 4, latentWidth: 4, schedule: schedule,
                                               noise: PhiloxNoise(seed: 5),
                                               guidance: scale.map { .init(scale: $0, negative: negative) })
                #expect(g.cacheBytes == (scale == nil || scale == 1 ? 1 : 2) * g.cache.byteCount)
                return try (0..<4).map { try g.nextBlock(prompt: contexts.value[$0], sceneCut: $0 == 2).toFloats() }
            }
            let plain = try direct(scale: nil, clean: false)
            #expect(try await pipeline(.init(scale: 1, negativePrompt: "blurry, static"), clean: false) == plain)
            #expect(try direct(scale: 1, clean: false) == plain)
            let guided = try await pipeline(.init(scale: 3, negativePrompt: "blurry, static"), clean: false)
            #expect(guided == (try direct(scale: 3, clean: false)))
            #expect((0..<4).allSatisfy { guided[$0] != plain[$0] })
            let clean = try await pipeline(nil, clean: true)
            #expect(clean == (try direct(scale: nil, clean: true)))
            #expect(Array(clean.prefix(3)) == Array(plain.prefix(3)) && clean[3] != plain[3])
            let both = try await pipeline(.init(scale: 3, negativePrompt: "blurry, static"), clean: true)
            #expect(both == (try direct(scale: 3, clean: true)))
            #expect(Array(both.prefix(3)) == Array(guided.prefix(3)) && both[3] != guided[3])
        }
    }

    /// A switch changes the blocks from its own on and nothing before (no recache rewrites the past); a switch to
    /// the same prompt marked as a scene cut changes that block too (shot RoPE offset, pinned sink).
    @Test func promptSwitchesChangeOnlyLaterBlocks() async throws {
        try await withModel { model, geometry in
            let request = PipelineRequest(geometry: geometry, latentFrames: 24, decode: false)
            let plain = try model.context(for: "a lighthouse on a cliff at dusk")
            let contexts = UncheckedSendable((plain, plain.startingShot()))
            let none = try await run(model, request)
            let switched = try await run(model, request) { $0 == 16 ? contexts.value.0 : nil }
            let cut = try await run(model, request) { $0 == 16 ? contexts.value.1 : nil }
            #expect(switched[0] == none[0] && switched[1] == none[1] && switched[2] != none[2])
            #expect(cut[0] == none[0] && cut[1] == none[1] && cut[2] != switched[2])
        }
    }

    /// LongLive 1.0's options are refused for a 2.0 model, and 2.0's for a 1.0 model, with what to do.
    @Test func wrongCombinationsAreRefused() async throws {
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "" } catch { return "\(error)" }
        }
        try await withModel { model, geometry in
            let prompt = try model.context(for: "a red circle")
            func make(_ request: PipelineRequest) throws {
                _ = try Pipeline(model: model, request: request, prompt: prompt, noise: PhiloxNoise(seed: 1))
            }
            #expect(message { try make(PipelineRequest(geometry: geometry, latentFrames: 8, decode: false, recacheOnSwitch: false)) }
                .contains("LongLive 1.0 options"))
            #expect(message { try make(PipelineRequest(geometry: Self.size, latentFrames: 8, decode: false)) }
                .contains("blocks of 8 latent frames of 16 pixels"))
            let continuation = VideoContext(latents: try backend.zeros([8, 4, 4, 48]), shown: false)
            #expect(message { try make(PipelineRequest(geometry: geometry, latentFrames: 8, decode: false, context: continuation)) }
                .contains("continuing a video is LongLive 1.0's"))
            #expect(message { _ = try BlockGeometry(width: 48, height: 48).matching(model.dit.config) }
                .contains("multiples of 32"))
            #expect(message { _ = try LongLive2BlockGenerator(
                generator: LongLive2Generator(model: model.dit, latentHeight: 4, latentWidth: 4, noise: PhiloxNoise(seed: 1)),
                prompt: prompt).issueContextBlock(try backend.zeros([8, 4, 4, 48]), shown: true) }
                .contains("takes no context blocks"))
        }
        // A 1.0 model with 2.0's schedule; a 2.0 DiT with a TAEHV (Wan2.1's 16 channels).
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let wan = try LoadedModel.load(files: try ModelFiles(folder: try f.wanFolder("Wan2.1-T2V-1.3B")), decoder: false,
                                       backend: backend)
        #expect(message {
            _ = try Pipeline(model: wan, request: PipelineRequest(geometry: Self.size, latentFrames: 3, decode: false,
                                                                  longLive2Schedule: .longLive2),
                             prompt: try wan.context(for: "a red circle"), noise: PhiloxNoise(seed: 1))
        }.contains("needs a LongLive 2.0 model"))
        #expect(message {
            _ = try Pipeline(model: wan, request: PipelineRequest(geometry: Self.size, latentFrames: 3, decode: false,
                                                                  guidance: .init(scale: 3)),
                             prompt: try wan.context(for: "a red circle"), noise: PhiloxNoise(seed: 1))
        }.contains("LongLive 2.0's option"))
        try f.longLive2Folder("LongLive2-tiny")
        try f.writeSafetensors(try f.taehvWeights(), to: "LongLive2-tiny/taehv.safetensors")
        var files = try ModelFiles(folder: f.path("LongLive2-tiny"))
        files.vae = nil
        #expect(message { _ = try LoadedModel.load(files: files, backend: backend) }.contains("Wan2.2 VAE"))
        #expect(message { _ = try LoadedModel.load(files: files, backend: backend) }.contains("taew2_2"))
    }

    /// taew2_2 (TAEHV for Wan2.2's latents) beside a 2.0 folder: recognised as its tiny decoder, it decodes each block
    /// as it comes (29 frames, then 32, of 16 pixels a latent), the frames those of `StreamingTinyDecoder` run on the
    /// pipeline's own latents.
    @Test func folderDecodesWithTAEW22() async throws {
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        try f.longLive2Folder("LongLive2-tiny")
        let weights = try TinyDecoder.randomWeights(channels: ModelFolderFixtures.taehvChannels, latentChannels: 48, patchSize: 2,
                                                    on: backend, seed: 4).tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        try f.writeSafetensors(weights, to: "LongLive2-tiny/taew2_2.safetensors")
        var files = try ModelFiles(folder: f.path("LongLive2-tiny"))
        #expect(files.tinyDecoder == f.path("LongLive2-tiny") + "/taew2_2.safetensors")
        files.vae = nil
        let model = try LoadedModel.load(files: files, decoder: true, backend: backend)
        #expect(model.decoderName == "taehv")
        let geometry = try Self.size.matching(model.dit.config)
        let latents = try await run(model, PipelineRequest(geometry: geometry, latentFrames: 16, decode: false))
        let pipeline = try Pipeline(model: model, request: PipelineRequest(geometry: geometry, latentFrames: 16),
                                    prompt: try model.context(for: "a red circle moves left"), noise: PhiloxNoise(seed: 5))
        let direct = try #require(model.newDecoder())
        var counts: [Int] = []
        for try await chunk in pipeline.chunks() {
            let frames = try #require(chunk.frames)
            #expect(frames.width == 64 && frames.height == 64)
            counts.append(frames.count)
            let block = try backend.tensor(latents[counts.count - 1], shape: [1, 8, 4, 4, 48])
            let expected = try RGBFrames(modelOutput: direct.decode(block))
            #expect(frames == expected)
            #expect(Set(frames.pixels).count > 16)   // an image, not a constant
        }
        #expect(counts == [29, 32])
    }

    /// The folder end to end: recognised, the Wan2.2 VAE decodes each block as it comes (29 frames, then 32).
    @Test func folderDecodesWithTheWan22VAE() async throws {
        try await withModel(decoder: true) { model, geometry in
            #expect(model.decoderName == "wan2.2-vae")
            let pipeline = try Pipeline(model: model, request: PipelineRequest(geometry: geometry, latentFrames: 16),
                                        prompt: try model.context(for: "a red circle moves left"), noise: PhiloxNoise(seed: 2))
            var counts: [Int] = []
            for try await chunk in pipeline.chunks() {
                let frames = try #require(chunk.frames)
                #expect(frames.width == 64 && frames.height == 64)
                counts.append(frames.count)
            }
            #expect(counts == [29, 32])
        }
    }

    /// `--image`: the image, encoded by the Wan2.2 VAE to one latent frame, is the first generated frame; the
    /// pipeline equals `LongLive2Generator(image:)` run directly.
    @Test func imageIsTheFirstFrame() async throws {
        try await withModel(decoder: true, encoder: true) { model, geometry in
            var pixels = [UInt8](repeating: 0, count: 64 * 64 * 3)
            for i in pixels.indices { pixels[i] = UInt8((i * 7 + i / 192 * 13) % 256) }
            let image = try RGBFrames(width: 64, height: 64, pixels: pixels)
            let encoder = try #require(model.newEncoder())
            let context = try ContextEncoder.firstFrame(image, encoder: encoder, geometry: geometry, on: model.encodeStream,
                                                        for: model.dit.backend)
            #expect(context.latents.shape == [1, 4, 4, 48])
            var request = PipelineRequest(geometry: geometry, latentFrames: 16, decode: false, context: context)
            let ours = try await run(model, request)
            let g = try LongLive2Generator(model: model.dit, latentHeight: 4, latentWidth: 4, noise: PhiloxNoise(seed: 5),
                                           image: context.latents)
            let prompt = try model.context(for: "a red circle moves left")
            let reference = try (0..<2).map { _ in try g.nextBlock(prompt: prompt).toFloats() }
            #expect(ours == reference)
            let first = try context.latents.toFloats()
            #expect(Array(ours[0].prefix(first.count)) == first)
            // Decoded: the image's frame opens the video, which keeps the requested length (29 + 32 frames).
            request.decode = true
            let pipeline = try Pipeline(model: model, request: request, prompt: prompt, noise: PhiloxNoise(seed: 5))
            var counts: [Int] = []
            for try await chunk in pipeline.chunks() { counts.append(try #require(chunk.frames).count) }
            #expect(counts == [29, 32])
        }
    }
}
