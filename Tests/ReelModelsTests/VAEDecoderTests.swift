import Foundation
import ReelCore
import ReelCPU
import ReelIO
@testable import ReelModels
import Testing

/// Parity of the Wan2.1 VAE against Wan2.1's own `vae.py` (and diffusers' AutoencoderKLWan, which the
/// fixture script checked agrees), small random-weight configuration of the real structure
/// (base dim 8, z 16, dim_mult [1, 2, 4, 4]); see tools/fixtures/vae/make_wan_vae_fixtures.py.
@Suite struct VAEDecoderTests {
    let b = VAEFixture.backend

    /// (decoder, latents [1, 5, 3, 5, 16], expected video [1, 17, 24, 40, 3])
    func fixture() throws -> (WanVAEDecoder, Tensor, Tensor) {
        let (file, weights) = try VAEFixture.open("wan_vae_decoder.safetensors")
        let decoder = try WanVAEDecoder.load(from: weights, on: b)
        let latents = try VAEFixture.tensor(file, "input.latents", permute: [0, 2, 3, 4, 1])
        let video = try VAEFixture.tensor(file, "output.video", permute: [0, 2, 3, 4, 1])
        return (decoder, latents, video)
    }

    @Test func configDetectedFromWeights() throws {
        let (decoder, _, _) = try fixture()
        #expect(decoder.config.baseDim == 8)
        #expect(decoder.config.zDim == 16)
        #expect(decoder.config.temporalUpsample == [true, true, false])
    }

    @Test func streamingDecodeMatchesWan() throws {
        let (decoder, latents, expected) = try fixture()
        let stream = StreamingVAEDecoder(model: decoder)
        // Blocks of 2 and 3 latents: latent 0 is split off inside the first block.
        let first = try stream.decode(b.slice(latents, axis: 1, start: 0, length: 2))
        #expect(first.shape == [1, 5, 24, 40, 3])                                 // 1 + 4 frames
        let second = try stream.decode(b.slice(latents, axis: 1, start: 2, length: 3))
        #expect(second.shape == [1, 12, 24, 40, 3])
        let video = try b.concat([first, second], axis: 1)
        let err = try VAEFixture.nmse(video, expected)
        print("Wan VAE decode vs Wan2.1 vae.py: nmse \(err)")
        #expect(err < 1e-9)
    }

    @Test func blockAndChunkSizesDoNotChangeTheFrames() throws {
        let (decoder, latents, expected) = try fixture()
        let perLatent = StreamingVAEDecoder(model: decoder, maxLatentFramesPerChunk: 1)
        let a = try VAEFixture.decode(perLatent, latents, blocks: [1, 1, 1, 1, 1])
        let whole = StreamingVAEDecoder(model: decoder, maxLatentFramesPerChunk: 8)
        let c = try VAEFixture.decode(whole, latents, blocks: [5])
        #expect(try VAEFixture.nmse(a, expected) < 1e-9)
        #expect(try VAEFixture.nmse(c, a) < 1e-10)
        // The full-resolution stages a frame at a time (default), two at a time, or the chunk at once.
        for slice in [0, 2, 3] {
            let sliced = StreamingVAEDecoder(model: decoder, maxLatentFramesPerChunk: 2, sliceFrames: slice)
            #expect(try VAEFixture.nmse(VAEFixture.decode(sliced, latents, blocks: [2, 3]), a) < 1e-10, "sliceFrames \(slice)")
        }
        // reset() starts a new video: the same frames again.
        whole.reset()
        #expect(try VAEFixture.nmse(VAEFixture.decode(whole, latents, blocks: [3, 2]), a) < 1e-10)
    }

    /// The layers after the last time upsampling get one frame at a time and run their causal convs
    /// as a 2-frame conv over the cached pair plus a 1-frame conv over the new frame, which the norm
    /// before writes straight into the pair (`CausalSlot.pair`): the same frames as the joined convs
    /// of a whole chunk (`sliceFrames` 0), and as Wan's (above).
    @Test func pairedConvsGiveTheJoinedConvsFrames() throws {
        let (decoder, latents, expected) = try fixture()
        #expect(decoder.backend.tuning.vaeTimeTaps)
        #expect(decoder.headConv.pairTaps?.pair.count == 2)
        for layer in decoder.upsamples[decoder.sliceStart...] {
            if case let .residual(block) = layer { #expect(block.conv1.pairTaps != nil && block.conv2.pairTaps != nil) }
        }
        for layer in decoder.upsamples[..<decoder.sliceStart] {
            if case let .residual(block) = layer { #expect(block.conv1.pairTaps == nil) }
        }
        let paired = try VAEFixture.decode(StreamingVAEDecoder(model: decoder, sliceFrames: 1), latents, blocks: [1, 2, 2])
        let joined = try VAEFixture.decode(StreamingVAEDecoder(model: decoder, sliceFrames: 0), latents, blocks: [1, 2, 2])
        #expect(try VAEFixture.nmse(paired, joined) < 1e-10)
        #expect(try VAEFixture.nmse(paired, expected) < 1e-9)
    }

    /// One stream's chunks decoded alternately a frame at a time (the caches as pairs) and whole
    /// (the caches as runs of frames): each hands its caches on to the other, the same frames.
    @Test func pairedAndJoinedCachesHandOver() throws {
        let (decoder, latents, _) = try fixture()
        let raw = try decoder.prepare(latents)
        func run(_ slices: [Int]) throws -> Tensor {
            var cache = CausalCache(count: decoder.slotCount)
            var outputs: [Tensor] = []
            for (i, slice) in slices.enumerated() {
                outputs.append(try decoder.forward(try b.slice(raw, axis: 1, start: i, length: 1), cache: &cache, sliceFrames: slice))
            }
            return try b.concat(outputs, axis: 1)
        }
        let mixed = try run([1, 0, 1, 0, 1]), paired = try run([1, 1, 1, 1, 1])
        #expect(try VAEFixture.nmse(mixed, paired) < 1e-10)
    }

    /// Without Wan's 'Rep' special case (time conv run on the first chunk, i.e. one causal pass over
    /// the whole sequence) the first latent gives 4 frames and the early frames come out wrong.
    @Test func naiveCausalDecodeDiffers() throws {
        let (decoder, latents, expected) = try fixture()
        let naive = StreamingVAEDecoder(model: decoder.withoutRepFirstChunk())
        let video = try VAEFixture.decode(naive, latents, blocks: [5])
        #expect(video.shape == [1, 20, 24, 40, 3])
        let aligned = try b.slice(video, axis: 1, start: 3, length: 17)
        let early = try VAEFixture.nmse(b.slice(aligned, axis: 1, start: 0, length: 5), b.slice(expected, axis: 1, start: 0, length: 5))
        print("naive (no 'Rep') decode, first 5 frames: nmse \(early)")
        #expect(early > 1e-2)
    }

    /// Weights and activations in bf16 (as the CUDA backend keeps them): same frames within bf16
    /// rounding. Measured 9.1e-4; PyTorch's own bf16 decode of this fixture is 1.2e-3 from float32.
    @Test func bf16WeightsStayClose() throws {
        let (file, weights) = try VAEFixture.open("wan_vae_decoder.safetensors")
        let decoder = try WanVAEDecoder.load(from: weights, on: b, dtype: .bf16)
        let latents = try VAEFixture.tensor(file, "input.latents", permute: [0, 2, 3, 4, 1])
        let expected = try VAEFixture.tensor(file, "output.video", permute: [0, 2, 3, 4, 1])
        let video = try StreamingVAEDecoder(model: decoder).decode(b.cast(latents, to: .bf16))
        #expect(video.dtype == .bf16)
        let err = try VAEFixture.nmse(b.cast(video, to: .f32), expected)
        print("Wan VAE decode with bf16 weights and activations: nmse \(err)")
        #expect(err < 3e-3)
    }

    @Test func stateStaysFlatOverLongStreams() throws {
        let (decoder, latents, _) = try fixture()
        let stream = StreamingVAEDecoder(model: decoder)
        var sizes: [Int] = []
        for i in 0..<8 {
            let frames = try stream.decode(b.slice(latents, axis: 1, start: i % 5, length: 1))
            #expect(frames.shape[1] == (i == 0 ? 1 : 4))
            sizes.append(stream.stateByteCount)
        }
        #expect(stream.latentFramesDecoded == 8)
        #expect(Set(sizes.dropFirst(2)).count == 1, "cache bytes per block: \(sizes)")
    }

    @Test func diffusersKeysMapOntoWanKeys() throws {
        let (file, _) = try VAEFixture.open("wan_vae_decoder.safetensors")
        let json = try #require(file.metadata["diffusers_keys"])
        let map = try JSONDecoder().decode([String: String].self, from: Data(json.utf8))
        #expect(map.count > 150)
        let rules = WanVAEKeyLayout.diffusers.rules(config: WanVAEConfig(baseDim: 8))
        for (wan, diffusers) in map {
            let mapped = rules.reduce(diffusers) { $1.apply($0) }
            #expect(mapped == wan, "\(diffusers) -> \(mapped), expected \(wan)")
        }
        #expect(try WanVAEKeyLayout.detect(Array(map.values)) == .diffusers)
        #expect(try WanVAEKeyLayout.detect(Array(map.keys)) == .wan)
    }

    @Test func decoderLoadsFromDiffusersKeys() throws {
        let (file, weights) = try VAEFixture.open("wan_vae_decoder.safetensors")
        let map = try JSONDecoder().decode([String: String].self, from: Data((file.metadata["diffusers_keys"] ?? "").utf8))
        var renamed: [String: Tensor] = [:]
        for (k, v) in try VAEFixture.inMemory(weights) { renamed[map[k] ?? k] = v }
        let decoder = try WanVAEDecoder.load(from: InMemoryTensors(renamed), on: b)
        let latents = try VAEFixture.tensor(file, "input.latents", permute: [0, 2, 3, 4, 1])
        let expected = try VAEFixture.tensor(file, "output.video", permute: [0, 2, 3, 4, 1])
        let video = try StreamingVAEDecoder(model: decoder).decode(latents)
        #expect(try VAEFixture.nmse(video, expected) < 1e-9)
    }

    @Test func strictLoading() throws {
        let (_, weights) = try VAEFixture.open("wan_vae_decoder.safetensors")
        let all = try VAEFixture.inMemory(weights)
        var missing = all
        missing["decoder.upsamples.4.residual.2.bias"] = nil
        #expect(throws: ReelError.self) { try WanVAEDecoder.load(from: InMemoryTensors(missing), on: b) }
        var extra = all
        extra["decoder.upsamples.99.residual.2.bias"] = all["decoder.upsamples.4.residual.2.bias"]
        #expect(throws: ReelError.self) { try WanVAEDecoder.load(from: InMemoryTensors(extra), on: b) }
        var wrong = all
        wrong["decoder.middle.1.to_qkv.bias"] = try b.zeros([7])
        #expect(throws: ReelError.self) { try WanVAEDecoder.load(from: InMemoryTensors(wrong), on: b) }
        // Encoder keys are the other half of the checkpoint, not leftovers.
        var withEncoder = all
        withEncoder["encoder.conv1.weight"] = try b.zeros([8, 3, 3, 3, 3])
        _ = try WanVAEDecoder.load(from: InMemoryTensors(withEncoder), on: b)
        #expect(throws: ReelError.self) { try WanVAEDecoder.load(from: InMemoryTensors(["x.weight": try b.zeros([1])]), on: b) }
    }

    @Test func badLatentsAreTypedErrors() throws {
        let (decoder, _, _) = try fixture()
        let stream = StreamingVAEDecoder(model: decoder)
        #expect(throws: ReelError.self) { try stream.decode(b.zeros([1, 2, 3, 5, 15])) }
        #expect(throws: ReelError.self) { try stream.decode(b.zeros([2, 3, 5, 16])) }
        #expect(throws: ReelError.self) { try stream.decode(b.zeros([1, 0, 3, 5, 16])) }
    }
}

@Suite struct VAEEncoderTests {
    let b = VAEFixture.backend

    @Test func encodeMatchesWan() throws {
        // The encoder fixture is in diffusers' key layout (encoder.down_blocks..., quant_conv).
        let (file, weights) = try VAEFixture.open("wan_vae_encoder.safetensors")
        let encoder = try WanVAEEncoder.load(from: weights, on: b)
        #expect(encoder.config.baseDim == 8)
        let video = try VAEFixture.tensor(file, "input.video", permute: [0, 2, 3, 4, 1])        // [1, 17, 24, 40, 3]
        let expected = try VAEFixture.tensor(file, "output.latents", permute: [0, 2, 3, 4, 1])  // [1, 5, 3, 5, 16]
        let latents = try encoder.encode(video)
        #expect(latents.shape == [1, 5, 3, 5, 16])
        let err = try VAEFixture.nmse(latents, expected)
        print("Wan VAE encode vs Wan2.1 vae.py: nmse \(err)")
        #expect(err < 1e-9)
        #expect(throws: ReelError.self) { try encoder.encode(b.slice(video, axis: 1, start: 0, length: 6)) }

        // Streaming, in blocks that cut across Wan's chunks of 1, 4, 4, ...: the same latents.
        let stream = StreamingVAEEncoder(model: encoder)
        var parts: [Tensor] = [], start = 0
        for n in [3, 2, 6, 1, 5] {
            if let l = try stream.encode(b.slice(video, axis: 1, start: start, length: n)) { parts.append(l) }
            start += n
        }
        #expect(stream.pendingFrames == 0 && stream.latentFramesEncoded == 5)
        #expect(try VAEFixture.nmse(b.concat(parts, axis: 1), expected) < 1e-9)
        #expect(throws: ReelError.self) { try stream.encode(b.zeros([1, 1, 16, 40, 3])) }
        #expect(throws: ReelError.self) { try encoder.encode(b.zeros([1, 5, 20, 40, 3])) }
    }

    /// A bf16 encoder given f32 frames (as pipelines once uploaded them) computes in bf16, the weights' dtype:
    /// on the GPU f32 activations sent every conv down the im2col path (~4x slower a block, perf-notes session 11).
    @Test func bf16EncoderCastsFramesToItsDType() throws {
        let (file, weights) = try VAEFixture.open("wan_vae_encoder.safetensors")
        let encoder = try WanVAEEncoder.load(from: weights, on: b, dtype: .bf16)
        #expect(encoder.dtype == .bf16)
        let video = try VAEFixture.tensor(file, "input.video", permute: [0, 2, 3, 4, 1])
        let expected = try VAEFixture.tensor(file, "output.latents", permute: [0, 2, 3, 4, 1])
        let fromF32 = try StreamingVAEEncoder(model: encoder).encode(video)
        let fromBF16 = try StreamingVAEEncoder(model: encoder).encode(b.cast(video, to: .bf16))
        #expect(fromF32?.dtype == .bf16)
        let (x, y) = (try #require(fromF32), try #require(fromBF16))
        #expect(try b.downloadBytes(x) == b.downloadBytes(y))
        let err = try VAEFixture.nmse(b.cast(x, to: .f32), expected)
        print("Wan VAE encode with bf16 weights and activations: nmse \(err)")
        #expect(err < 3e-3)
    }
}

@Suite struct VAELatentLayoutTests {
    let b = VAEFixture.backend

    @Test func layoutsAreDetectedAndPermuted() throws {
        let values = (0..<(16 * 2 * 3 * 5)).map { Float($0) }
        let nthwc = try b.tensor(values, shape: [1, 2, 3, 5, 16])
        let ncthw = try b.permute(nthwc, [0, 4, 1, 2, 3])
        let ntchw = try b.permute(nthwc, [0, 1, 4, 2, 3])
        for x in [nthwc, ncthw, ntchw] {
            #expect(try LatentLayout.channelLast(x, channels: 16).toFloats() == values)
        }
        // Rank 4 (N left out) is one video.
        #expect(try LatentLayout.channelLast(ncthw.reshaped([16, 2, 3, 5]), channels: 16).shape == [1, 2, 3, 5, 16])
        // 16 frames of 16 channels: ambiguous unless the layout is given.
        let square = try b.zeros([1, 16, 16, 3, 5])
        #expect(throws: ReelError.self) { try LatentLayout.channelLast(square, channels: 16) }
        #expect(try LatentLayout.channelLast(square, channels: 16, layout: .ntchw).shape == [1, 16, 3, 5, 16])
        #expect(throws: ReelError.self) { try LatentLayout.channelLast(b.zeros([1, 2, 3, 5, 4]), channels: 16) }
        #expect(throws: ReelError.self) { try LatentLayout.channelLast(b.zeros([16, 2]), channels: 16) }
    }
}
