import Foundation
import ReelCore
import ReelCPU
import ReelMedia
import ReelModels
@testable import ReelPipeline
import Testing

/// The input encoder, the text encoder and the decoder each on a device of their own (`reel generate
/// --encode-device`, `--text-device`, `--decode-device`; in-process CPU devices standing for GPUs): the shipped tiny
/// model (`Models/tiny`) loaded with the DiT on cpu:0, umT5 on cpu:1, the encoder on cpu:2 and the decoder on cpu:3
/// makes the one-device video bit for bit. Video-to-video hands each encoded block to the DiT's device by its event
/// (`StreamGeneratorStage`); an image's context is handed over by `ContextEncoder`. Reel's own GEMM everywhere, so no
/// BLAS kernel choice enters.
@Suite(.serialized) struct StagePlacementTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Models/tiny").path
    static let geometry = BlockGeometry(width: 64, height: 64)
    static let prompt = "a red circle moves left on a blue background"

    static func stream(_ device: CPUDevice = .shared) -> CPUBackend { CPUBackend(threads: 2, gemm: .own, device: device) }

    static func oneDevice() throws -> LoadedModel {
        try LoadedModel.load(files: try ModelFiles(folder: folder), encoder: true, backend: stream())
    }

    static func placed() throws -> LoadedModel {
        let devices = (0..<4).map { CPUDevice(ordinal: $0) }
        return try LoadedModel.load(files: try ModelFiles(folder: folder), encoder: true, backend: stream(devices[0]),
                                    decodeBackend: stream(devices[3]), encodeBackend: stream(devices[2]),
                                    textBackend: stream(devices[1]))
    }

    /// A square moving right over 13 frames (5 + 4 + 4: three input blocks); `shift` moves it further.
    static func frames(shift: Int = 0) throws -> [RGBFrames] {
        let size = geometry.width
        return try (0..<13).map { i in
            var p = [UInt8](repeating: 40, count: size * size * 3)
            let x0 = (3 * i + shift) % (size - 16)
            for y in 20..<36 { for x in x0..<(x0 + 16) { p[(y * size + x) * 3] = 220; p[(y * size + x) * 3 + 1] = 90 } }
            return try RGBFrames(width: size, height: size, pixels: p)
        }
    }

    static func videoToVideo(_ model: LoadedModel, input: [RGBFrames]) async throws -> [[UInt8]] {
        let encoder = try #require(model.newEncoder())
        let pipeline = try VideoToVideoPipeline(model: model, encoder: encoder, encodeStream: model.encodeStream,
                                                input: MemoryInput(input), request: VideoToVideoRequest(geometry: geometry),
                                                prompt: try model.context(for: prompt), noise: PhiloxStreamNoise(seed: 5))
        var pixels: [[UInt8]] = []
        for try await chunk in pipeline.chunks() { pixels.append(try #require(chunk.frames).pixels) }
        return pixels
    }

    @Test func eachStageOnItsOwnDeviceMakesTheOneDeviceVideo() async throws {
        let one = try Self.oneDevice(), placed = try Self.placed()
        #expect(placed.dit.backend.device.name == "cpu:0")
        #expect(placed.prompts.textEncoder.backend.device.name == "cpu:1")
        #expect(placed.encodeStream.device.name == "cpu:2")
        #expect(placed.decodeStream.device.name == "cpu:3")
        #expect(!placed.encodeStream.device.isSame(as: placed.dit.backend.device), "the hand-over copies between devices")

        let input = try Self.frames()
        let reference = try await Self.videoToVideo(one, input: input)
        let spread = try await Self.videoToVideo(placed, input: input)
        #expect(reference.map(\.count) == [5, 4, 4].map { $0 * 64 * 64 * 3 })
        #expect(spread == reference, "video-to-video with the encoder, text encoder and decoder on devices of their own")
        // Negative control: the same placement with the input's square moved makes another video, so the comparison
        // sees what the encoder on cpu:2 made.
        let moved = try await Self.videoToVideo(placed, input: try Self.frames(shift: 5))
        #expect(moved.count == reference.count && moved != reference)

        // An image's latents (the still clip's context) encoded on cpu:2 arrive on the DiT's device, the same values.
        let image = try Self.frames()[0]
        let context = { (model: LoadedModel) throws -> Tensor in
            try ContextEncoder.image(image, encoder: try #require(model.newEncoder()), geometry: Self.geometry,
                                     on: model.encodeStream, for: model.dit.backend).latents
        }
        let (a, b) = (try context(one), try context(placed))
        #expect(b.backend.device.name == "cpu:0")
        #expect(try b.toFloats() == a.toFloats())
    }
}
