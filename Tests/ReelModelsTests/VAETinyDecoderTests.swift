import ReelCore
import ReelCPU
import ReelIO
@testable import ReelModels
import Testing

/// Parity of the TAEHV tiny decoder against madebyollin/taehv's `taehv.py` (narrow channels
/// [32, 16, 8, 8], the real structure and trimming); see tools/fixtures/vae/make_taehv_fixture.py.
@Suite struct VAETinyDecoderTests {
    let b = VAEFixture.backend

    /// (decoder, latents [1, 5, 3, 5, 16], expected frames [1, 17, 24, 40, 3] in [0, 1])
    func fixture() throws -> (TinyDecoder, Tensor, Tensor) {
        let (file, weights) = try VAEFixture.open("taehv_decoder.safetensors")
        let model = try TinyDecoder.load(from: weights, on: b)
        let latents = try VAEFixture.tensor(file, "input.latents", permute: [0, 1, 3, 4, 2])
        let video = try VAEFixture.tensor(file, "output.video", permute: [0, 1, 3, 4, 2])
        return (model, latents, video)
    }

    @Test(arguments: [[2, 3], [1, 1, 1, 1, 1], [5]])
    func streamingDecodeMatchesTAEHV(blocks: [Int]) throws {
        let (model, latents, expected) = try fixture()
        #expect(model.channels == [32, 16, 8, 8])
        #expect(model.framesToTrim == 3)
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
        print("TAEHV decode (blocks \(blocks)) vs taehv.py: nmse \(err)")
        #expect(err < 1e-9)
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
    }
}
