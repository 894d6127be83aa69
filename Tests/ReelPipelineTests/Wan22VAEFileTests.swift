import Foundation
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
import ReelPipeline
import ReelTestSupport
import Testing

/// A Wan2.2 VAE in the file the release ships (`Wan2.2_VAE.pth`: a `torch.save` state dict of float32 tensors in
/// vae2_2.py's names), made from the parity fixture's weights (Tests/ReelModelsTests/Fixtures/vae/wan22_vae.safetensors):
/// recognised in a model folder, named by the inspection, and decoding as vae2_2.py does.
@Suite struct Wan22VAEFileTests {
    let backend = CPUBackend()

    @Test func pthCheckpointIsRecognisedAndDecodes() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ReelModelsTests/Fixtures/vae/wan22_vae.safetensors").path
        let file = try WeightFiles.open(fixture)
        let f = try ModelFolderFixtures()
        defer { f.remove() }
        let weights = try file.keys.sorted().filter { !$0.hasPrefix("input.") && !$0.hasPrefix("output.") }
            .map { ($0, try file.tensor($0, on: backend, as: .f32)) }
        try f.writeTorch(try f.stateDict(weights), to: "Wan2.2_VAE.pth")

        let inspection = ModelInspection(folder: try ModelFolder.recognise(f.root.path), backend: backend)
        let vae = try #require(inspection.parts.first { $0.part.role == .vae })
        #expect(vae.architecture.hasPrefix("Wan2.2 VAE: widths 4 / 4, z 48"), "\(vae.architecture)")

        let decoder = try WanVAEDecoder.load(from: WeightFileTensors(path: f.path("Wan2.2_VAE.pth")), on: backend)
        #expect(decoder.config.isResidual && decoder.config.zDim == 48)
        let latents = try backend.permute(file.tensor("input.latents", on: backend, as: .f32), [0, 2, 3, 4, 1])
        let expected = try backend.permute(file.tensor("output.video", on: backend, as: .f32), [0, 2, 3, 4, 1])
        let video = try StreamingVAEDecoder(model: decoder).decode(latents)
        let (x, y) = (try video.toFloats(), try expected.toFloats())
        let err = zip(x, y).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / y.reduce(0.0) { $0 + Double($1 * $1) }
        #expect(video.shape == expected.shape && err < 1e-10, "nmse \(err)")
    }
}
