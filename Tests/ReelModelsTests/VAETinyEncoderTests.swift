import ReelCore
import ReelCPU
import ReelIO
@testable import ReelModels
import Testing

/// Parity of the TAEHV tiny encoder against madebyollin/taehv's `taehv.py` (width 16 instead of 64,
/// the real structure and TPool strides); see tools/fixtures/vae/make_taehv_encoder_fixture.py.
///
/// Tolerance: both sides compute in float32 from the same float16-rounded weights, so they differ only
/// in the order of float32 sums (conv as GEMM here, oneDNN/ATen there). That is ~1e-7 relative per op,
/// an nmse near 1e-13 after the 20 layers; 1e-9 leaves room for other summation orders while every
/// structural mistake below (memory, first-frame rule, padding, input range) lands at 1e-4 or above.
@Suite struct VAETinyEncoderTests {
    let b = VAEFixture.backend
    static let tolerance = 1e-9

    /// (encoder, video [1, 13, 24, 40, 3] in [-1, 1] as Reel's frames are, expected latents [1, 4, 3, 5, 16])
    func fixture() throws -> (TinyEncoder, Tensor, Tensor) {
        let (file, weights) = try VAEFixture.open("taehv_encoder.safetensors")
        let model = try TinyEncoder.load(from: weights, on: b)
        let video01 = try VAEFixture.tensor(file, "input.video", permute: [0, 1, 3, 4, 2])
        let latents = try VAEFixture.tensor(file, "output.latents", permute: [0, 1, 3, 4, 2])
        return (model, try b.affine(video01, scale: 2, bias: -1), latents)
    }

    /// Feeds `video` in calls of `chunks` frames, then flushes; checks each call's latent count.
    func encode(_ stream: StreamingTinyEncoder, _ video: Tensor, chunks: [Int]) throws -> Tensor {
        var parts: [Tensor] = [], start = 0
        for n in chunks {
            let before = stream.latentFramesEncoded
            let latents = try stream.encode(b.slice(video, axis: 1, start: start, length: n))
            start += n
            #expect((latents?.shape[1] ?? 0) == start / 4 - before)
            if let latents { parts.append(latents) }
        }
        if let last = try stream.flush() { parts.append(last) }
        return try b.concat(parts, axis: 1)
    }

    @Test(arguments: [[13], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [3, 5, 2, 3], [4, 4, 4, 1], [7, 6]])
    func streamingEncodeMatchesTAEHV(chunks: [Int]) throws {
        let (model, video, expected) = try fixture()
        #expect(model.channels == 16 && model.latentChannels == 16)
        #expect(model.timeDownscale == [2, 2, 1] && model.framesPerLatent == 4)
        let stream = StreamingTinyEncoder(model: model)
        let latents = try encode(stream, video, chunks: chunks)
        #expect(stream.latentFramesEncoded == 4 && stream.pendingFrames == 0)
        #expect(latents.shape == expected.shape)
        let err = try VAEFixture.nmse(latents, expected)
        print("TAEHV encode (chunks \(chunks)) vs taehv.py: nmse \(err)")
        #expect(err < Self.tolerance)
    }

    @Test func unevenChunksEqualOneCall() throws {
        let (model, video, _) = try fixture()
        let whole = try encode(StreamingTinyEncoder(model: model), video, chunks: [13])
        let uneven = try encode(StreamingTinyEncoder(model: model), video, chunks: [2, 1, 6, 3, 1])
        let err = try VAEFixture.nmse(uneven, whole)
        print("TAEHV encode, chunks [2, 1, 6, 3, 1] vs one call: nmse \(err)")
        #expect(err < 1e-12)
    }

    @Test func resetStartsANewStream() throws {
        let (model, video, expected) = try fixture()
        let stream = StreamingTinyEncoder(model: model)
        _ = try stream.encode(b.slice(video, axis: 1, start: 5, length: 6))
        stream.reset()
        #expect(stream.framesEncoded == 0)
        #expect(try VAEFixture.nmse(encode(stream, video, chunks: [6, 7]), expected) < Self.tolerance)
    }

    /// Negative controls: each plausible mistake must land far above the tolerance.
    @Test func wrongVariantsMissTAEHV() throws {
        let (model, video, expected) = try fixture()
        func report(_ name: String, _ latents: Tensor) throws {
            let err = try VAEFixture.nmse(latents, expected)
            print("TAEHV encode, \(name): nmse \(err)")
            #expect(err > 1e-4, "\(name)")
        }
        // No memory: every group of 4 frames encoded as a fresh stream (MemBlocks see zeros).
        let padded = try b.concat([video] + Array(repeating: b.slice(video, axis: 1, start: 12, length: 1), count: 3),
                                  axis: 1)
        try report("no MemBlock memory", b.concat((0..<4).map { j in
            try StreamingTinyEncoder(model: model).encode(b.slice(padded, axis: 1, start: 4 * j, length: 4))!
        }, axis: 1))
        // Wan's first-frame rule: latent 0 from frame 0 alone (3 copies of it in front), 1 + 4k -> 1 + k.
        let first = try b.slice(video, axis: 1, start: 0, length: 1)
        try report("Wan first-frame rule", encode(StreamingTinyEncoder(model: model),
                                                    b.concat([first, first, first, video], axis: 1), chunks: [16]))
        // The end padded with black instead of copies of the last frame.
        let black = try b.affine(b.zeros([1, 3, 24, 40, 3]), scale: 1, bias: -1)
        try report("end padded with black", encode(StreamingTinyEncoder(model: model),
                                                     b.concat([video, black], axis: 1), chunks: [16]))
        // Frames in [0, 1] given as they are (the [-1, 1] -> [0, 1] conversion skipped).
        try report("no [-1, 1] -> [0, 1] conversion", encode(StreamingTinyEncoder(model: model),
                                                               b.affine(video, scale: 0.5, bias: 0.5), chunks: [13]))
    }

    @Test func flatMemoryOverALongStream() throws {
        let model = try TinyEncoder.load(from: TinyEncoder.randomWeights(channels: 8, on: b), on: b)
        let stream = StreamingTinyEncoder(model: model)
        let frames = try b.affine(b.randomNormal([1, 3, 16, 8, 3], seed: 3, offset: 0, dtype: .f32),
                                  scale: 0.3, bias: 0)
        var sizes: [Int] = []
        for call in 0..<16 {
            let latents = try stream.encode(frames)
            #expect((latents?.shape[1] ?? 0) == (3 * call + 3) / 4 - (3 * call) / 4)
            #expect(latents.map { $0.shape.dims.dropFirst(2) == [2, 1, 16] } ?? true)
            sizes.append(stream.stateElementCount)
        }
        // 48 frames in: the state after call 4 (12 frames) and call 16 (48 frames) is the same size,
        // and never above one frame per TPool and per MemBlock.
        #expect(sizes[3] == sizes[15])
        #expect(sizes.max()! <= (3 + 9) * 16 * 8 * 8 + 16 * 8 * 3)
    }

    @Test func batchItemsAreIndependent() throws {
        // TPool groups frames within each video of the batch, never across videos.
        let model = try TinyEncoder.load(from: TinyEncoder.randomWeights(channels: 8, on: b), on: b)
        let videos = try b.affine(b.randomNormal([2, 6, 16, 8, 3], seed: 5, offset: 0, dtype: .f32),
                                  scale: 0.3, bias: 0)
        let batch = try encode(StreamingTinyEncoder(model: model), videos, chunks: [3, 3])
        for i in 0..<2 {
            let one = try encode(StreamingTinyEncoder(model: model), b.slice(videos, axis: 0, start: i, length: 1),
                                 chunks: [6])
            #expect(try VAEFixture.nmse(b.slice(batch, axis: 0, start: i, length: 1), one) < 1e-12)
        }
    }

    @Test func badInputThrows() throws {
        let model = try TinyEncoder.load(from: TinyEncoder.randomWeights(channels: 8, on: b), on: b)
        let stream = StreamingTinyEncoder(model: model)
        #expect(throws: ReelError.self) { try stream.encode(b.zeros([2, 16, 16, 3])) }        // no time axis
        #expect(throws: ReelError.self) { try stream.encode(b.zeros([1, 2, 16, 16, 4])) }     // RGBA
        #expect(throws: ReelError.self) { try stream.encode(b.zeros([1, 2, 20, 16, 3])) }     // not a multiple of 8
        _ = try stream.encode(b.zeros([1, 2, 16, 16, 3]))
        #expect(throws: ReelError.self) { try stream.encode(b.zeros([1, 2, 16, 24, 3])) }     // size changed
        #expect(throws: ReelError.self) { try stream.encode(b.zeros([2, 2, 16, 16, 3])) }     // batch changed
        #expect(try stream.encode(b.zeros([1, 2, 16, 16, 3]))?.shape == [1, 1, 2, 2, 16])     // still usable
    }

    @Test func strictLoading() throws {
        let (_, weights) = try VAEFixture.open("taehv_encoder.safetensors")
        var all = try VAEFixture.inMemory(weights)
        all["decoder.1.weight"] = try b.zeros([256, 16, 3, 3])   // the decoder half is ignored
        _ = try TinyEncoder.load(from: InMemoryTensors(all), on: b)
        var extra = all
        extra["encoder.99.weight"] = try b.zeros([1])
        #expect(throws: ReelError.self) { try TinyEncoder.load(from: InMemoryTensors(extra), on: b) }
        var missing = all
        missing["encoder.15.conv.2.bias"] = nil
        #expect(throws: ReelError.self) { try TinyEncoder.load(from: InMemoryTensors(missing), on: b) }
        var badPool = all
        badPool["encoder.7.conv.weight"] = try b.zeros([16, 48, 1, 1])   // a stride-3 TPool
        #expect(throws: ReelError.self) { try TinyEncoder.load(from: InMemoryTensors(badPool), on: b) }
        var patched = all
        patched["encoder.0.weight"] = try b.zeros([16, 12, 3, 3])        // patch size 2 (taew2_2)
        #expect(throws: ReelError.self) { try TinyEncoder.load(from: InMemoryTensors(patched), on: b) }
    }

    @Test func randomWeightsAndFLOPs() throws {
        let e = try TinyEncoder.load(from: TinyEncoder.randomWeights(on: b), on: b)
        #expect(e.channels == 64 && e.latentChannels == 16 && e.timeDownscale == [2, 2, 1])
        // taew2_1's encoder: 9 MemBlocks of 64 (147,648 parameters each) and the rest.
        let params = TinyEncoder.weightShapes().reduce(0) { $0 + $1.1.count }
        #expect(params == 9 * 147_648 + (64 * 27 + 64) + 2 * 64 * 128 + 64 * 64 + 3 * 64 * 64 * 9 + (16 * 64 * 9 + 16))
        // At 480x832 (latent 60x104), counted by hand per layer: ~242 GFLOP per latent frame.
        let flops = TinyEncoder.flopsPerLatentFrame(height: 60, width: 104)
        #expect(abs(flops / 1e9 - 242) < 2, "\(flops / 1e9) GFLOP per latent frame")
    }
}
