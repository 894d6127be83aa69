import ReelCore
import ReelCPU
import ReelIO
@testable import ReelModels
import Testing

/// Parity of the TAEHV tiny decoder against madebyollin/taehv's `taehv.py` (narrow channels
/// [32, 16, 8, 8], the real structure and trimming), as taew2_1 (16 latent channels) and taew2_2 (48, the output
/// pixel-shuffled by 2); see tools/fixtures/vae/make_taehv_fixture.py.
@Suite struct VAETinyDecoderTests {
    let b = VAEFixture.backend

    /// The two fixtures: taew2_1's layout and taew2_2's.
    static let files = ["taehv_decoder.safetensors", "taew22_decoder.safetensors"]

    /// (decoder, latents [1, 5, h, w, z], expected frames [1, 17, 8ph, 8pw, 3] in [0, 1])
    func fixture(_ name: String = files[0]) throws -> (TinyDecoder, Tensor, Tensor) {
        let (file, weights) = try VAEFixture.open(name)
        let model = try TinyDecoder.load(from: weights, on: b)
        let latents = try VAEFixture.tensor(file, "input.latents", permute: [0, 1, 3, 4, 2])
        let video = try VAEFixture.tensor(file, "output.video", permute: [0, 1, 3, 4, 2])
        return (model, latents, video)
    }

    @Test(arguments: files, [[2, 3], [1, 1, 1, 1, 1], [5]])
    func streamingDecodeMatchesTAEHV(file: String, blocks: [Int]) throws {
        let (model, latents, expected) = try fixture(file)
        #expect(model.channels == [32, 16, 8, 8])
        #expect(model.framesToTrim == 3)
        let wan22 = file == Self.files[1]
        #expect(model.latentChannels == (wan22 ? 48 : 16) && model.patchSize == (wan22 ? 2 : 1))
        #expect(StreamingTinyDecoder(model: model).spatialStride == (wan22 ? 16 : 8))
        let stream = StreamingTinyDecoder(model: model)
        var parts: [Tensor] = [], start = 0
        for n in blocks {
            let frames = try stream.decode(b.slice(latents, axis: 1, start: start, length: n))
            #expect(frames.shape[1] == (start == 0 ? 4 * n - 3 : 4 * n))
            parts.append(frames)
            start += n
        }
        // The decoder speaks [-1, 1]; taehv's output is [0, 1].
        let video = try b.affine(b.concat(parts, axis: 1), scale: 0.5, bias: 0.5)
        #expect(video.shape == expected.shape)
        let err = try VAEFixture.nmse(video, expected)
        print("TAEHV decode (\(file), blocks \(blocks)) vs taehv.py: nmse \(err)")
        #expect(err < 1e-9)
    }

    @Test func taew22WithWansPatchOrderDiffers() throws {
        // Negative control for the pixel shuffle: Wan2.2's unpatchify takes the patch's W offset before its H offset;
        // taehv's pixel_shuffle the other way round. The frames must differ far past the tolerance.
        let (model, latents, expected) = try fixture(Self.files[1])
        var memory = [Tensor?](repeating: nil, count: model.memBlockCount)
        let shuffled = try model.forward(latents, memory: &memory)                  // [1, 20, 32, 48, 3]
        let (n, t, h, w) = (shuffled.shape[0], shuffled.shape[1], shuffled.shape[2] / 2, shuffled.shape[3] / 2)
        // Back to the conv's channels in taehv's order, then out again in Wan's.
        let channels = try b.permute(shuffled.reshaped([n * t, h, 2, w, 2, 3]), [0, 1, 3, 5, 2, 4]).reshaped([n, t, h, w, 12])
        let wrong = try Patchify.unpack(channels, patch: 2)
        #expect(try VAEFixture.nmse(shuffled, wrong) > 0)   // the two orders disagree on these frames
        let right = try b.slice(shuffled, axis: 1, start: 3, length: t - 3)
        #expect(try VAEFixture.nmse(right, expected) < 1e-9)
        let err = try VAEFixture.nmse(b.slice(wrong, axis: 1, start: 3, length: t - 3), expected)
        print("taew2_2 with Wan's patch order: nmse \(err)")
        #expect(err > 1e-2)
    }

    @Test func withoutMemoryTheFramesDiffer() throws {
        // Decoding every latent as a fresh stream drops the MemBlocks' past frames: must not match.
        let (model, latents, expected) = try fixture()
        var parts: [Tensor] = []
        for i in 0..<5 {
            var fresh = [Tensor?](repeating: nil, count: model.memBlockCount)
            let raw = try model.forward(b.slice(latents, axis: 1, start: i, length: 1), memory: &fresh)
            parts.append(i == 0 ? try b.slice(raw, axis: 1, start: 3, length: 1) : raw)
        }
        let err = try VAEFixture.nmse(b.concat(parts, axis: 1), expected)
        print("TAEHV without MemBlock state: nmse \(err)")
        #expect(err > 1e-3)
    }

    @Test func strictLoading() throws {
        let (_, weights) = try VAEFixture.open("taehv_decoder.safetensors")
        var all = try VAEFixture.inMemory(weights)
        all["encoder.0.weight"] = try b.zeros([64, 3, 3, 3])   // the encoder half is ignored
        _ = try TinyDecoder.load(from: InMemoryTensors(all), on: b)
        var extra = all
        extra["decoder.99.weight"] = try b.zeros([1])
        #expect(throws: ReelError.self) { try TinyDecoder.load(from: InMemoryTensors(extra), on: b) }
        var missing = all
        missing["decoder.16.conv.2.bias"] = nil
        #expect(throws: ReelError.self) { try TinyDecoder.load(from: InMemoryTensors(missing), on: b) }
        var badTGrow = all
        badTGrow["decoder.13.conv.weight"] = try b.zeros([16, 16, 1, 1])   // stride 2 needs 32 rows
        #expect(throws: ReelError.self) { try TinyDecoder.load(from: InMemoryTensors(badTGrow), on: b) }
        var badOutput = all
        badOutput["decoder.22.weight"] = try b.zeros([6, 8, 3, 3])       // neither 3 (taew2_1) nor 12 (taew2_2) channels
        badOutput["decoder.22.bias"] = try b.zeros([6])
        #expect(throws: ReelError.self) { try TinyDecoder.load(from: InMemoryTensors(badOutput), on: b) }
    }
}
