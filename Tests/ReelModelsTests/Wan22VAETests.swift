import Foundation
import ReelCore
import ReelCPU
import ReelIO
@testable import ReelModels
import Testing

/// Parity of the Wan2.2 VAE (decoder and encoder) against Wan2.2's own `wan/modules/vae2_2.py`, on a small
/// random-weight configuration of the real structure (encoder dim 4, decoder dim 4, z 48 with the real latent
/// statistics, dim_mult [1, 2, 4, 4]); see tools/fixtures/vae/make_wan22_vae_fixtures.py.
///
/// Tolerance: nmse < 1e-10. Both sides compute in float32 from the same float16-exact weights; they differ only in
/// summation order (measured ~1e-13 .. 1e-12). Every deliberately wrong variant below is measured > 1e-2, eight
/// orders of magnitude past it.
@Suite struct Wan22VAETests {
    let b = VAEFixture.backend
    static let tolerance = 1e-10

    /// (file, weights) of the fixture; latents [1, 4, 2, 3, 48], video [1, 13, 32, 48, 3] channel-last.
    func open() throws -> (any WeightFile, any TensorSource) { try VAEFixture.open("wan22_vae.safetensors") }

    func decoder() throws -> WanVAEDecoder { try WanVAEDecoder.load(from: open().1, on: b) }
    func encoder() throws -> WanVAEEncoder { try WanVAEEncoder.load(from: open().1, on: b) }

    func tensor(_ key: String) throws -> Tensor { try VAEFixture.tensor(open().0, key, permute: [0, 2, 3, 4, 1]) }

    @Test func configDetectedFromWeights() throws {
        let c = try decoder().config
        #expect(c.isResidual && c.patchSize == 2 && c.zDim == 48)
        #expect(c.decoderBaseDim == 4 && c.spatialStride == 16 && c.temporalStride == 4)
        #expect(c.latentsMean == WanVAEConfig.wan22Mean && c.latentsStd == WanVAEConfig.wan22Std)
        let e = try encoder().config
        #expect(e.baseDim == 4 && e.isResidual)
        #expect(try WanVAEConfig.family(keys: open().1.keys) == .wan22)
    }

    @Test func streamingDecodeMatchesWan22() throws {
        let (latents, expected) = (try tensor("input.latents"), try tensor("output.video"))
        let stream = StreamingVAEDecoder(model: try decoder())
        let first = try stream.decode(b.slice(latents, axis: 1, start: 0, length: 2))
        #expect(first.shape == [1, 5, 32, 48, 3])                                 // 1 + 4 frames
        let second = try stream.decode(b.slice(latents, axis: 1, start: 2, length: 2))
        #expect(second.shape == [1, 8, 32, 48, 3])
        let err = try VAEFixture.nmse(b.concat([first, second], axis: 1), expected)
        print("Wan2.2 VAE decode vs Wan2.2 vae2_2.py: nmse \(err)")
        #expect(err < Self.tolerance)
    }

    @Test func blockChunkAndSliceSizesDoNotChangeTheFrames() throws {
        let (latents, expected) = (try tensor("input.latents"), try tensor("output.video"))
        let d = try decoder()
        let perLatent = try VAEFixture.decode(StreamingVAEDecoder(model: d), latents, blocks: [1, 1, 1, 1])
        #expect(try VAEFixture.nmse(perLatent, expected) < Self.tolerance)
        for (chunk, slice) in [(4, 0), (2, 1), (3, 2)] {
            let s = StreamingVAEDecoder(model: d, maxLatentFramesPerChunk: chunk, sliceFrames: slice)
            #expect(try VAEFixture.nmse(VAEFixture.decode(s, latents, blocks: [3, 1]), expected) < Self.tolerance, "chunk \(chunk) slice \(slice)")
        }
    }

    /// Weights and activations in bf16 (as the CUDA backend keeps them): the same frames within bf16 rounding
    /// (measured nmse 5.1e-4 decode, 1.4e-4 encode; the Wan2.1 VAE's bound is the same 3e-3).
    @Test func bf16StaysClose() throws {
        let d = try WanVAEDecoder.load(from: open().1, on: b, dtype: .bf16)
        let video = try StreamingVAEDecoder(model: d).decode(b.cast(tensor("input.latents"), to: .bf16))
        let err = try VAEFixture.nmse(b.cast(video, to: .f32), tensor("output.video"))
        let e = try WanVAEEncoder.load(from: open().1, on: b, dtype: .bf16)
        let latents = try e.encode(b.cast(tensor("input.video"), to: .bf16))
        let encErr = try VAEFixture.nmse(b.cast(latents, to: .f32), tensor("output.latents"))
        print("Wan2.2 VAE in bf16: decode nmse \(err), encode nmse \(encErr)")
        #expect(err < 3e-3 && encErr < 3e-3)
    }

    @Test func stateStaysFlatOverLongStreams() throws {
        let latents = try tensor("input.latents")
        let stream = StreamingVAEDecoder(model: try decoder())
        var sizes: [Int] = []
        for i in 0..<7 {
            #expect(try stream.decode(b.slice(latents, axis: 1, start: i % 4, length: 1)).shape[1] == (i == 0 ? 1 : 4))
            sizes.append(stream.stateByteCount)
        }
        #expect(Set(sizes.dropFirst(2)).count == 1, "cache bytes per latent: \(sizes)")
    }

    @Test func encodeMatchesWan22() throws {
        let (video, expected) = (try tensor("input.video"), try tensor("output.latents"))
        let e = try encoder()
        let latents = try e.encode(video)
        #expect(latents.shape == [1, 4, 2, 3, 48])
        let err = try VAEFixture.nmse(latents, expected)
        print("Wan2.2 VAE encode vs Wan2.2 vae2_2.py: nmse \(err)")
        #expect(err < Self.tolerance)
        // Streaming in blocks that cut across Wan's chunks of 1, 4, 4, 4.
        let stream = StreamingVAEEncoder(model: e)
        var parts: [Tensor] = [], start = 0
        for n in [2, 4, 1, 6] {
            if let l = try stream.encode(b.slice(video, axis: 1, start: start, length: n)) { parts.append(l) }
            start += n
        }
        #expect(stream.pendingFrames == 0 && stream.latentFramesEncoded == 4)
        #expect(try VAEFixture.nmse(b.concat(parts, axis: 1), expected) < Self.tolerance)
        // Frames must be multiples of 16 pixels.
        #expect(throws: ReelError.self) { try e.encode(b.zeros([1, 1, 24, 48, 3])) }
    }

    // MARK: Deliberately wrong variants, each far past the tolerance.

    /// Every latent after the first decoded without the previous latents' features (no feature cache carried over):
    /// a fresh stream primed with a zero latent, so its causal convs see that history instead.
    @Test func noFeatureCacheFails() throws {
        let (latents, expected) = (try tensor("input.latents"), try tensor("output.video"))
        let d = try decoder()
        var parts: [Tensor] = [try StreamingVAEDecoder(model: d).decode(b.slice(latents, axis: 1, start: 0, length: 1))]
        for i in 1..<4 {   // a fresh stream per latent, the first chunk decoded and dropped to get 4 frames
            let s = StreamingVAEDecoder(model: d)
            _ = try s.decode(b.zeros([1, 1, 2, 3, 48]))
            parts.append(try s.decode(b.slice(latents, axis: 1, start: i, length: 1)))
        }
        let err = try VAEFixture.nmse(b.concat(parts, axis: 1), expected)
        print("Wan2.2 decode without the feature cache: nmse \(err)")
        #expect(err > 1e-2)
    }

    /// Without Wan's 'Rep' first chunk (a plain causal pass over the whole sequence): latent 0 gives 4 frames and
    /// the early frames are wrong.
    @Test func naiveCausalFirstChunkFails() throws {
        let (latents, expected) = (try tensor("input.latents"), try tensor("output.video"))
        let video = try StreamingVAEDecoder(model: try decoder().withoutRepFirstChunk(), maxLatentFramesPerChunk: 4).decode(latents)
        #expect(video.shape == [1, 16, 32, 48, 3])
        let aligned = try b.slice(video, axis: 1, start: 3, length: 5)
        let err = try VAEFixture.nmse(aligned, b.slice(expected, axis: 1, start: 0, length: 5))
        print("Wan2.2 decode with a non-causal ('Rep'-less) first chunk, first 5 frames: nmse \(err)")
        #expect(err > 1e-2)
    }

    /// The 2x2 patches unpacked in the wrong order ((c q r) instead of Wan's (c r q)): each patch transposed.
    @Test func wrongPatchOrderFails() throws {
        let (latents, expected) = (try tensor("input.latents"), try tensor("output.video"))
        let video = try StreamingVAEDecoder(model: try decoder()).decode(latents)
        let cells = try video.reshaped([13 * 16, 2, 24, 2, 3])                  // [T h, q, w, r, c]
        let swapped = try b.permute(cells, [0, 3, 2, 1, 4]).reshaped(video.shape)
        let err = try VAEFixture.nmse(swapped, expected)
        print("Wan2.2 decode with the patch order swapped: nmse \(err)")
        #expect(err > 1e-2)
    }

    @Test func missingShortcutFails() throws {
        let (latents, expected) = (try tensor("input.latents"), try tensor("output.video"))
        let video = try StreamingVAEDecoder(model: try decoder().withoutShortcuts()).decode(latents)
        let err = try VAEFixture.nmse(video, expected)
        print("Wan2.2 decode without the DupUp3D shortcuts: nmse \(err)")
        #expect(err > 1e-2)
        let latents2 = try encoder().withoutShortcuts().encode(tensor("input.video"))
        let encErr = try VAEFixture.nmse(latents2, tensor("output.latents"))
        print("Wan2.2 encode without the AvgDown3D shortcuts: nmse \(encErr)")
        #expect(encErr > 1e-2)
    }

    /// Latents not de-normalized (the decoder fed them as raw latents) and the encoder's raw means.
    @Test func unnormalizedLatentsFail() throws {
        let (latents, expected) = (try tensor("input.latents"), try tensor("output.video"))
        let mean = try b.tensor(WanVAEConfig.wan22Mean, shape: [48]), std = try b.tensor(WanVAEConfig.wan22Std, shape: [48])
        let raw = try b.binary(.div, b.binary(.sub, latents, mean), std)           // the decoder's z * std + mean undone
        let video = try StreamingVAEDecoder(model: try decoder()).decode(raw)
        let err = try VAEFixture.nmse(video, expected)
        print("Wan2.2 decode of un-normalized latents: nmse \(err)")
        #expect(err > 1e-2)
        let stream = StreamingVAEEncoder(model: try encoder())
        stream.normalizes = false
        let means = try #require(try stream.encode(tensor("input.video")))
        let encErr = try VAEFixture.nmse(means, tensor("output.latents"))
        print("Wan2.2 encode without the latent normalization: nmse \(encErr)")
        #expect(encErr > 1e-2)
    }

    // MARK: Layouts and weights

    /// diffusers' `AutoencoderKLWan(is_residual=True)` names, renamed into Wan's by the layout's rules: the same
    /// decoder and encoder.
    @Test func diffusersLayoutLoads() throws {
        let (file, weights) = try open()
        let map = try JSONDecoder().decode([String: String].self, from: Data((file.metadata["diffusers_keys"] ?? "").utf8))
        #expect(map.count == weights.keys.count)
        let rules = WanVAEKeyLayout.diffusers.rules(config: .wan22)
        for (wan, diffusers) in map {
            #expect(rules.reduce(diffusers) { $1.apply($0) } == wan, "\(diffusers)")
        }
        #expect(try WanVAEKeyLayout.detect(Array(map.values)) == .diffusers)
        #expect(WanVAEConfig.isResidual(keys: Array(map.values)))
        var renamed: [String: Tensor] = [:]
        for (k, v) in try VAEFixture.inMemory(weights) { renamed[map[k] ?? k] = v }
        let source = InMemoryTensors(renamed)
        let video = try StreamingVAEDecoder(model: WanVAEDecoder.load(from: source, on: b)).decode(tensor("input.latents"))
        #expect(try VAEFixture.nmse(video, tensor("output.video")) < Self.tolerance)
        let latents = try WanVAEEncoder.load(from: source, on: b).encode(tensor("input.video"))
        #expect(try VAEFixture.nmse(latents, tensor("output.latents")) < Self.tolerance)
    }

    @Test func strictLoading() throws {
        let all = try VAEFixture.inMemory(open().1)
        var missing = all
        missing["decoder.upsamples.2.upsamples.3.resample.1.bias"] = nil
        #expect(throws: ReelError.self) { try WanVAEDecoder.load(from: InMemoryTensors(missing), on: b) }
        var extra = all
        extra["decoder.upsamples.3.upsamples.3.resample.1.bias"] = all["decoder.upsamples.2.upsamples.3.resample.1.bias"]
        #expect(throws: ReelError.self) { try WanVAEDecoder.load(from: InMemoryTensors(extra), on: b) }
    }

    /// Random weights of the real architecture load strictly; the real sizes: 555.1M decoder parameters (conv2
    /// included) and 149.6M encoder parameters (conv1 included), 704.7M in all, as Wan2.2's `WanVAE_` counts them.
    @Test func randomWeightsOfTheRealArchitecture() throws {
        var small = WanVAEConfig.wan22
        small.baseDim = 4
        small.decoderBaseDim = 8
        let d = try WanVAEDecoder.load(from: WanVAEDecoder.randomWeights(small, on: b), on: b)
        #expect(d.config.decoderBaseDim == 8)
        let video = try StreamingVAEDecoder(model: d).decode(b.randomNormal([1, 2, 1, 2, 48], seed: 3, offset: 0, dtype: .f32))
        #expect(video.shape == [1, 5, 16, 32, 3])
        let e = try WanVAEEncoder.load(from: WanVAEEncoder.randomWeights(small, on: b), on: b)
        #expect(try e.encode(b.randomNormal([1, 5, 16, 32, 3], seed: 4, offset: 0, dtype: .f32)).shape == [1, 2, 1, 2, 48])
        let decoderParams = WanVAEDecoder.weightShapes(.wan22).reduce(0) { $0 + $1.1.count }
        let encoderParams = WanVAEEncoder.weightShapes(.wan22).reduce(0) { $0 + $1.1.count }
        #expect(decoderParams == 555_051_580 && encoderParams == 149_637_088)
    }
}
