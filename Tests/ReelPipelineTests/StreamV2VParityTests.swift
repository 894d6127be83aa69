import Foundation
import Testing
import ReelCore
import ReelCPU
import ReelModels
@testable import ReelPipeline

/// Parity with StreamDiffusionV2's own live session code (fixture: tools/fixtures/dit/make_sdv2_fixture.py,
/// its command in the files' metadata): a 2-layer random DiT, 2 + 18 latent frames with a scene cut at
/// frame 7 (one genuine sink refresh besides the fill artifact), the RoPE reset at frame 12, every noise
/// draw replayed; N = 2 and N = 4 denoising levels.
///
/// Tolerance (relative L2 over all output latents, the fixture script's distance): the faithful float32
/// run lands at about 1e-6 for N = 2 and N = 4 (float32 summation order; the reference computes x0 in
/// float64), as does each wrong variant against its own recorded output. 1e-5 leaves a factor of ~9 over
/// that, and sits three orders of magnitude below the nearest wrong variant (no RoPE reset, 2.4e-2 from
/// the faithful output at N = 4) and below the fixture's own bf16-vs-float32 distance (7e-3).
@Suite struct StreamV2VParityTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/sdv2").path
    static let tolerance = 1e-5
    let parity = StreamV2VParity(folder: Self.dir, backend: CPUBackend())

    @Test(arguments: [2, 4]) func matchesStreamDiffusionV2InFloat32(steps: Int) throws {
        let r = try parity.run(steps: steps)
        print("SDV2 parity N=\(steps) (CPU float32): relative error \(r.relativeError)")
        #expect(r.relativeError < Self.tolerance)

        // The per-call trace: noise scale, first step, positions and eviction queues as the reference's.
        let (_, _, trace) = try parity.openCase(steps: steps)
        #expect(trace.count == r.queues.count)
        for (call, t) in trace.enumerated() {
            let step = r.steps[call + 1]
            #expect(abs(step.noiseScale - (t["noise_scale"] as? Double ?? .nan)) < 1e-6, "call \(call)")
            #expect(step.timesteps == t["timesteps"] as? [Int], "call \(call)")
            #expect(step.positions == t["rope_frame"] as? [Int], "call \(call)")
            #expect(r.queues[call] == t["evict_frames"] as? [[[Int]]], "call \(call)")
            let refreshes = t["refresh"] as? [[Double]] ?? []
            #expect(step.refreshes.map { [$0.layer, $0.row, $0.slot] }
                    == refreshes.map { [Int($0[0]), Int($0[1]), Int($0[2])] }, "call \(call)")
            for (ours, theirs) in zip(step.refreshes, refreshes) {
                #expect(abs(Double(ours.similarity) - theirs[3]) < 1e-3, "call \(call)")   // rounded to 4 places
            }
        }
    }

    @Test(arguments: [2, 4]) func wrongVariantsReproduceTheirOutputsAndMoveFarPastTolerance(steps: Int) throws {
        for variant in StreamV2VParity.Variant.allCases where variant != .faithful {
            let own = try parity.run(steps: steps, variant: variant).relativeError
            let fromFaithful = try parity.run(steps: steps, variant: variant, compareTo: .faithful).relativeError
            print("SDV2 N=\(steps) \(variant.rawValue): vs its fixture output \(own), vs the faithful output \(fromFaithful)")
            #expect(own < Self.tolerance, "\(variant)")
            #expect(fromFaithful > 100 * Self.tolerance, "\(variant)")
        }
    }

    @Test func badInputsThrow() throws {
        let backend = CPUBackend()
        let config = WanDiTConfig(dim: 64, ffnDim: 128, heads: 2, layers: 1, textDim: 64)
        let dit = try WanDiT.load(from: WanDiT.randomWeights(config, on: backend), heads: 2, backend: backend)
        let prompt = try dit.encodePrompt(try backend.zeros([4, 64]))
        func make(_ s: StreamV2VSchedule) throws -> StreamBatchGenerator {
            try StreamBatchGenerator(model: dit, prompt: prompt, latentHeight: 4, latentWidth: 4, schedule: s,
                                     noise: PhiloxStreamNoise(seed: 1))
        }
        #expect(throws: ReelError.self) { try make(StreamV2VSchedule(denoisingSteps: [700, 1200])) }
        #expect(throws: ReelError.self) { try make(StreamV2VSchedule(denoisingSteps: [500, 700])) }
        #expect(throws: ReelError.self) { try make(StreamV2VSchedule(denoisingSteps: [])) }
        #expect(throws: ReelError.self) { try make(StreamV2VSchedule(noiseScale: 0.05)) }
        let gen = try make(.streamDiffusionV2)
        #expect(throws: ReelError.self) { try gen.push(latent: try backend.zeros([1, 4, 4, 16]), motion: 0) }
        #expect(throws: ReelError.self) { try gen.start(latents: try backend.zeros([2, 4, 4, 8])) }
        #expect(throws: ReelError.self) { try gen.start(latents: try backend.zeros([6, 4, 4, 16])) }
        let first = try gen.start(latents: try backend.zeros([2, 4, 4, 16]))
        #expect(first.latents.shape == [2, 4, 4, 16])
        #expect(throws: ReelError.self) { try gen.push(latent: try backend.zeros([2, 4, 4, 16]), motion: 0) }
        #expect(throws: ReelError.self) { try gen.push(latent: try backend.zeros([1, 4, 4, 16]), motion: .nan) }
        #expect(try gen.push(latent: try backend.zeros([1, 4, 4, 16]), motion: 0) == nil)
        #expect(try gen.push(latent: try backend.zeros([1, 4, 4, 16]), motion: 0.1)?.index == 1)
    }
}
