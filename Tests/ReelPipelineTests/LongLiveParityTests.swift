import Foundation
import Testing
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
@testable import ReelPipeline

/// Parity with LongLive v1.0's own code (fixture: tools/fixtures/dit/make_longlive_fixture.py, whose
/// command is recorded in the files' metadata): 9 blocks of 3 latent frames, so the 12-frame window
/// rolls; prompt switches at frames 6 (recache reaching frame 0) and 18 (recache with the sink kept);
/// a rank-8 LoRA that LongLive applies unmerged and Reel merges at load; every noise draw replayed.
/// The weights are in LongLive's own checkpoint formats (longlive_base.pt, lora.pt).
@Suite struct LongLiveParityTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/longlive")
    let backend = CPUBackend()

    struct Variant {
        /// A converted checkpoint (LoRA already merged) instead of the fixture's DiT + LoRA.
        var converted: String?
        var lora = true
        var recache = true
        var schedule = StreamingSchedule.longLive
    }

    /// Runs Reel on the fixture and returns the latents in the reference layout [frames, C, H, W].
    func generate(_ variant: Variant) throws -> (ours: [Float], reference: [Float], baseline: [Float]) {
        let caseFile = try WeightFiles.open(Self.dir.appendingPathComponent("case.safetensors").path)
        // LongLive's own checkpoint files: {"generator": {"model.*"}} and {"generator_lora": PEFT keys}.
        let dit = try variant.converted.map { try WanDiT.load(path: $0, backend: backend) } ?? WanDiT.load(
            path: Self.dir.appendingPathComponent("longlive_base.pt").path,
            lora: variant.lora ? Self.dir.appendingPathComponent("lora.pt").path : nil,
            heads: 2, backend: backend)
        #expect(dit.config.layers == 2 && dit.config.dim == 64 && dit.config.headDim == 32)
        let prompts = try (0..<3).map { try dit.encodePrompt(try caseFile.tensor("prompt.\($0)", on: backend)) }
        let noiseT = try caseFile.tensor("noise", on: backend)
        let renoiseT = try caseFile.tensor("renoise", on: backend)
        let noise = try RecordedNoise(initial: noiseT, renoise: renoiseT)
        let gen = try StreamingGenerator(model: dit, prompt: prompts[0], latentHeight: 8, latentWidth: 8,
                                         schedule: variant.schedule, noise: noise)
        gen.recacheOnSwitch = variant.recache
        var ours: [Float] = []
        for _ in 0..<9 {
            if gen.currentFrame == 6 { gen.switchPrompt(to: prompts[1]) }
            if gen.currentFrame == 18 { gen.switchPrompt(to: prompts[2]) }
            let block = try gen.nextBlock()
            ours += try backend.permute(block.latents, [0, 3, 1, 2]).toFloats()
        }
        // What a v = 0 model gives from the same noise: x0 = x_t at every step.
        let n0 = try noiseT.toFloats(), rn = try renoiseT.toFloats()
        let sigmas = FlowMatchSchedule.longLive.sigmas
        let perBlock = 3 * 16 * 8 * 8
        var baseline = [Float](repeating: 0, count: n0.count)
        for b in 0..<9 {
            for i in 0..<perBlock {
                var x = n0[b * perBlock + i]
                for s in 0..<3 { x = (1 - sigmas[s + 1]) * x + sigmas[s + 1] * rn[(b * 3 + s) * perBlock + i] }
                baseline[b * perBlock + i] = x
            }
        }
        return (ours, try caseFile.tensor("latents", on: backend).toFloats(), baseline)
    }

    /// ||ours - reference|| / ||reference - baseline||: the error relative to what the model contributes.
    func relativeError(_ r: (ours: [Float], reference: [Float], baseline: [Float])) -> Double {
        var num = 0.0, den = 0.0
        for i in r.ours.indices {
            num += Double(r.ours[i] - r.reference[i]) * Double(r.ours[i] - r.reference[i])
            den += Double(r.reference[i] - r.baseline[i]) * Double(r.reference[i] - r.baseline[i])
        }
        return (num / den).squareRoot()
    }

    @Test func matchesLongLiveInFloat32() throws {
        let err = relativeError(try generate(Variant()))
        print("LongLive parity (CPU float32): relative error \(err)")
        #expect(err < 1e-4)
    }

    /// `reel convert`'s path: canonical names, LoRA merged, heads in the metadata; same video.
    @Test func convertedCheckpointMatchesToo() throws {
        let (source, lora) = try WanDiT.openCheckpoint(path: Self.dir.appendingPathComponent("longlive_base.pt").path,
                                                       lora: Self.dir.appendingPathComponent("lora.pt").path)
        let tensors = try WanDiT.canonicalTensors(from: source, lora: lora, backend: backend, dtype: .f32)
        var writer = SafetensorsWriter()
        for (name, t) in tensors { try writer.add(name, t) }
        writer.metadata["heads"] = "2"
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("reel-converted-\(UUID().uuidString).safetensors").path
        try writer.write(to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(relativeError(try generate(Variant(converted: path))) < 1e-4)
    }

    @Test func wrongVariantsMoveFarPastTolerance() throws {
        let noRecache = relativeError(try generate(Variant(recache: false)))
        let noLoRA = relativeError(try generate(Variant(lora: false)))
        let noSink = relativeError(try generate(Variant(schedule: StreamingSchedule(sinkFrames: 0, attentionFrames: 9))))
        print("wrong variants: no recache \(noRecache), no LoRA \(noLoRA), no sink \(noSink)")
        #expect(noRecache > 1e-2)
        #expect(noLoRA > 1e-2)
        #expect(noSink > 1e-2)
    }
}
