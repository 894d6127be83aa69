import Foundation
import Testing
import ReelCore
import ReelCPU
import ReelMedia
import ReelModels
import ReelPipeline
import ReelTestSupport
@testable import ReelEval

/// The shipped tiny model's encoder (`Models/tiny/taehv.safetensors`, `encoder.*`): a drawn frame survives the
/// encoder and decoder, and an image opens a video that then moves as prompted. Bounds sit below what the shipped
/// weights measured (in the comments).
@Suite struct ShippedEncoderTests {
    /// A red disc (radius 14) centred at (`cx`, 64) on a blue background, 128 x 128, in the training palette's colours.
    static func disc(cx: Int) throws -> RGBFrames {
        var p = [UInt8](repeating: 0, count: 128 * 128 * 3)
        for y in 0..<128 {
            for x in 0..<128 {
                let inside = (x - cx) * (x - cx) + (y - 64) * (y - 64) <= 14 * 14
                let c: [UInt8] = inside ? [220, 40, 40] : [40, 70, 200]
                p.replaceSubrange((y * 128 + x) * 3..<(y * 128 + x) * 3 + 3, with: c)
            }
        }
        return try RGBFrames(width: 128, height: 128, pixels: p)
    }

    static func psnr(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Double {
        let mse = zip(a, b).reduce(0.0) { $0 + pow(Double($1.0) - Double($1.1), 2) } / Double(a.count)
        return 10 * log10(255 * 255 / max(mse, 1e-9))
    }

    /// The centroid's x of the reddish pixels of frame `i` (nil when there are none).
    static func redX(_ frames: RGBFrames, _ i: Int) -> Double? {
        let f = Array(frames.frame(i))
        var sum = 0.0, n = 0.0
        for p in 0..<(128 * 128) where f[3 * p] > 150 && f[3 * p + 2] < 120 { sum += Double(p % 128); n += 1 }
        return n > 20 ? sum / n : nil
    }

    @Test func imageOpensTheVideoAndItMoves() async throws {
        let backend = CPUBackend(threads: 2)
        let model = try LoadedModel.load(files: try ModelFiles(folder: ShippedModelTests.folder), encoder: true, backend: backend)
        let geometry = BlockGeometry(width: 128, height: 128)
        let image = try Self.disc(cx: 40)
        let encoder = try #require(model.newEncoder())
        let context = try await offThePool {
            try ContextEncoder.image(image, encoder: encoder, geometry: geometry, on: model.encodeStream, for: backend)
        }

        // Round trip: the still clip's latents decoded.
        let decoder = try #require(model.newDecoder())
        let still = try await offThePool {
            try RGBFrames(modelOutput: decoder.decode(try context.latents.reshaped([1] + context.latents.shape.dims)))
        }
        let roundTrip = Self.psnr(still.frame(0), image.frame(0))
        print("shipped encoder: round trip PSNR of a drawn frame \(roundTrip) dB")
        #expect(roundTrip >= 22)   // measured 25.2 dB

        let request = PipelineRequest(geometry: geometry, latentFrames: 9, context: context)
        let pipeline = try Pipeline(model: model, request: request, prompt: try model.context(for: "a red circle moves right on a blue background"),
                                    noise: PhiloxNoise(seed: 0))
        var frames: [RGBFrames] = []
        for try await chunk in pipeline.chunks() { frames.append(try #require(chunk.frames)) }
        #expect(frames.map(\.count) == [9, 12, 12, 12])
        let first = Self.psnr(frames[0].frame(0), image.frame(0))
        let start = try #require(Self.redX(frames[0], 0)), end = try #require(Self.redX(frames[3], 11))
        print("shipped model, --image: first frame PSNR \(first) dB against the image; red centroid x \(start) -> \(end)")
        #expect(first >= 22)                                       // measured 25.2 dB
        #expect(abs(start - 40) <= 4)                              // measured 39.8
        #expect(end > start + 30, "the circle should move right")  // measured 39.8 -> 91.5
    }

    /// `--continue` on the shipped model: a video of a circle moving right, continued with "moves left", picks up
    /// where it ended and then turns back.
    @Test func continuationPicksUpWhereTheVideoEnded() async throws {
        let backend = CPUBackend(threads: 2)
        let model = try LoadedModel.load(files: try ModelFiles(folder: ShippedModelTests.folder), encoder: true, backend: backend)
        let geometry = BlockGeometry(width: 128, height: 128)
        func video(_ prompt: String, latentFrames: Int, context: VideoContext?) async throws -> RGBFrames {
            let request = PipelineRequest(geometry: geometry, latentFrames: latentFrames, context: context)
            let pipeline = try Pipeline(model: model, request: request, prompt: try model.context(for: prompt), noise: PhiloxNoise(seed: 1))
            var pixels: [UInt8] = []
            for try await chunk in pipeline.chunks() { pixels += try #require(chunk.frames).pixels }
            return try RGBFrames(width: 128, height: 128, pixels: pixels)
        }
        let base = try await video("a red circle moves right on a blue background", latentFrames: 9, context: nil)
        let encoder = try #require(model.newEncoder())
        let context = try await offThePool {
            try ContextEncoder.continuation(base, encoder: encoder, geometry: geometry, maxLatentFrames: 12,
                                            on: model.encodeStream, for: backend)
        }
        let next = try await video("a red circle moves left on a blue background", latentFrames: 9, context: context)
        #expect(next.count == 36)
        let end = try #require(Self.redX(base, base.count - 1))
        let start = try #require(Self.redX(next, 0)), last = try #require(Self.redX(next, next.count - 1))
        print("shipped model, --continue: red centroid x \(end) at the end, \(start) -> \(last) in the continuation")
        #expect(abs(start - end) <= 8)                             // measured 110.3 -> 108.0
        #expect(last < start - 20, "the circle should move left")  // measured 108.0 -> 61.1
    }

    /// `reel eval --restyle 4 --animate 4` on the shipped model (seed 0, the folder's noise scale 0.6, 2 steps):
    /// video-to-video puts the prompt's colours where the input's object is and follows its motion; an image
    /// opens a video whose object starts where the image has it and moves as prompted. The model before its
    /// video-to-video fine-tune (training/tiny/v2v_train.py) drew the object where text-to-video puts it, ~40 px
    /// from the input's: the centre bound catches that.
    @Test func videoAndImageInputsStayWithinTheirMeasuredBounds() async throws {
        let files = try ModelFiles(folder: ShippedModelTests.folder)
        let model = try LoadedModel.load(files: files, encoder: true, backend: CPUBackend(threads: 2))
        var options = EvalOptions()
        options.prompts = 0
        options.switches = 0
        options.longFrames = 0
        options.restyleVideos = 4
        options.animateVideos = 4
        options.noiseScale = try #require(files.noiseScale)
        let source = try ModelFrameSource(model: model, frameSize: 128, summary: "Models/tiny")
        let report = try await EvalRunner(source: source, options: options).run()
        print(report.table)
        let v = try #require(report.restyle), a = try #require(report.animate)
        func rate(_ rates: [AttributeRate], _ x: Attribute) -> Double { rates.first { $0.attribute == x }?.rate ?? 0 }
        // Measured: colour 88.8%, background 100%, presence 56.2%, input colour kept 0%, centre error median 4.28 px,
        // velocity error median 0.19 px/frame.
        #expect(rate(v.rates, .colour) >= 0.75 && rate(v.rates, .background) >= 0.95, "\(v.rates)")
        #expect(rate(v.rates, .presence) >= 0.45, "\(v.rates)")
        #expect((v.inputColourKept.rate ?? 1) <= 0.05, "\(v.inputColourKept)")
        #expect((v.centreError.median ?? 99) <= 7, "\(v.centreError)")
        #expect((v.velocityError.median ?? 99) <= 0.8, "\(v.velocityError)")
        // Measured: start error median 1.92 px, motion 91.7% of blocks, presence 97.2%.
        #expect((a.startError.median ?? 99) <= 4, "\(a.startError)")
        #expect(rate(a.rates, .motion) >= 0.65 && rate(a.rates, .presence) >= 0.85, "\(a.rates)")
    }

    /// `reel eval --autoencoded`: the ground truth through the shipped TAEHV encoder and decoder, the ceiling of any
    /// DiT decoded by them. Full run (40 prompts, seed 0): shape 57.1%, presence 89.3%, colour 99.6%, background 100%
    /// (the DiT: shape 37.1%): the shape target of issue 20 (70%) needs a new autoencoder before a new DiT. Here
    /// 16 prompts of one block (measured: shape 48.6%, presence 94.4%, colour 100%); bounds below what the drawn frames
    /// score (100%): a better autoencoder moves the shape bound up.
    @Test func autoencoderCeilingStaysWithinItsMeasuredBounds() async throws {
        let files = try ModelFiles(folder: ShippedModelTests.folder)
        let model = try LoadedModel.load(files: files, encoder: true, backend: CPUBackend(threads: 2))
        var options = EvalOptions()
        options.prompts = 16
        options.blocksPerPrompt = 1
        options.switches = 0
        options.longFrames = 0
        let source = try AutoencodedFrameSource(model: model, frameSize: 128, summary: "Models/tiny through its autoencoder")
        let report = try await EvalRunner(source: source, options: options).run()
        print(report.table)
        let rates = try #require(report.adherence).rates
        func rate(_ x: Attribute) -> Double { rates.first { $0.attribute == x }?.rate ?? 0 }
        #expect(rate(.background) >= 0.95 && rate(.colour) >= 0.9, "\(rates)")
        #expect(rate(.presence) >= 0.8, "\(rates)")
        #expect(rate(.shape) >= 0.35 && rate(.shape) <= 0.8, "\(rates)")
    }
}
