import Foundation
import ReelCore
import ReelCPU
import ReelPipeline
import Testing
@testable import ReelServer

/// `reel serve --gpu-memory GB`: the model is placed for the server's default size; a session asking for a size
/// whose KV cache, activations and decoder the cap cannot hold with that placement is refused before it queues,
/// with the device memory it needs (`does_not_fit`), not failed mid-run.
@Suite struct MemoryCapSessionTests {
    @Test func aSessionTooLargeForTheCapIsRefusedWithWhatItNeeds() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let files = try ModelFiles(folder: root.appendingPathComponent("Models/tiny").path)
        let geometry = BlockGeometry(width: 128, height: 128)
        let host = CPUBackend(threads: 2)
        // A cap that holds the 128x128 plan with the text encoder on the CPU and every block resident.
        let probe = try LoadedModel.load(files: files, backend: CPUBackend(threads: 2),
                                         residency: Residency(cap: 1 << 40, geometry: geometry, host: host))
        let estimate = try #require(probe.placement).estimate(geometry)
        let cap = Int(estimate.withoutTextEncoder) + 1
        let model = try LoadedModel.load(files: files, backend: CPUBackend(threads: 2),
                                         residency: Residency(cap: cap, geometry: geometry, host: host))
        let placement = try #require(model.placement)
        #expect(placement.plan.textEncoder == .cpu && placement.plan.streamedLayers == 0)

        func request(_ side: Int) -> SessionRequest {
            SessionRequest(prompt: "a red circle", seed: 1, width: side, height: side, fps: 16, seconds: 1, quality: 90,
                           record: false)
        }
        try request(128).checkFits(placement, config: model.dit.config)
        try request(64).checkFits(placement, config: model.dit.config)
        let manager = SessionManager(model: model, config: TestModel.config())
        let error = try await #require(throws: APIError.self) { _ = try await manager.create(request(512)) }
        #expect(error.code == "does_not_fit" && error.status == .contentTooLarge)
        #expect(error.message.contains("cannot hold a 512x512 video") && error.message.contains("it needs"), "\(error.message)")
        #expect(await manager.counts.total == 0)
    }
}
