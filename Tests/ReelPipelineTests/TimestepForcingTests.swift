import Foundation
import Testing
import ReelCore
import ReelCPU
import ReelModels
@testable import ReelPipeline

/// LiveAvatar's timestep-forcing pipeline over LongLive's 4 steps, on 4 in-process CPU devices (a replica and a
/// cache each, a thread each): it makes its one-device sequential emulation's latents bit for bit over blocks that
/// fill and wrap the window, the sink's refresh and a prompt switch with each stage's recache; it is not LongLive's
/// exact schedule (block 0 is, every later block is not); misplaced replicas are clear errors. Reel's own GEMM
/// rounds a row the same on every device, so the comparisons do not depend on a BLAS's kernel choice.
@Suite struct TimestepForcingTests {
    /// LongLive's 4 steps; a window of two blocks besides the sink: 8 blocks wrap the ring 3 times.
    static let schedule = StreamingSchedule(framesPerBlock: 3, sinkFrames: 3, attentionFrames: 9,
                                            denoisingSteps: [1000, 750, 500, 250])
    static let config = WanDiTConfig(dim: 96, ffnDim: 128, heads: 12, layers: 2, textDim: 16)
    static let latent = (h: 4, w: 6)
    static let blocks = 8, switchAt = 5

    struct Models {
        let single: WanDiT           // on device 0
        let replicas: [WanDiT]       // one per CPU device 0..<4 (replicas[0] is `single`)
        let first: Tensor, second: Tensor
    }

    static func models(devices: Int = 4) throws -> Models {
        let backends = (0..<devices).map { CPUBackend(gemm: .own, device: CPUDevice(ordinal: $0)) }
        let weights = try WanDiT.randomWeights(config, on: backends[0], seed: 21)
        let replicas = try backends.map { try WanDiT.load(from: weights, heads: 12, backend: $0).withTextLength(8) }
        return Models(single: replicas[0], replicas: replicas,
                      first: try backends[0].randomNormal([5, 16], seed: 1, offset: 0, dtype: .f32),
                      second: try backends[0].randomNormal([6, 16], seed: 2, offset: 0, dtype: .f32))
    }

    /// The emulation's blocks (one device, one step after another), switching before block `switchAt`.
    func emulated(_ m: Models, recache: Bool = true) throws -> [[Float]] {
        let e = try TimestepForcingEmulation(model: m.single, prompt: try m.single.encodePrompt(m.first),
                                             latentHeight: Self.latent.h, latentWidth: Self.latent.w,
                                             schedule: Self.schedule, noise: PhiloxNoise(seed: 7), recacheOnSwitch: recache)
        return try (0..<Self.blocks).map { b in
            if b == Self.switchAt { e.switchPrompt(to: try m.single.encodePrompt(m.second)) }
            return try e.nextBlock().toFloats()
        }
    }

    /// The pipelined generator's blocks on the replicas' devices, the switch given live before block `switchAt`.
    func pipelined(_ m: Models, recache: Bool = true) throws -> [[Float]] {
        let g = try TimestepForcingGenerator(replicas: m.replicas, prompt: try m.single.encodePrompt(m.first),
                                             latentHeight: Self.latent.h, latentWidth: Self.latent.w, schedule: Self.schedule,
                                             noise: PhiloxNoise(seed: 7), recacheOnSwitch: recache,
                                             latentFrames: Self.blocks * 3)
        defer { g.stop() }
        var out: [[Float]] = []
        for b in 0..<Self.blocks {
            // Asking for block b feeds block b + 3 (blocks 0 to 3 at the first call): a live switch lands 3 blocks on.
            if b == Self.switchAt - 3 { g.switchPrompt(to: try m.single.encodePrompt(m.second)) }
            let block = try g.issueBlock().resolvingTimings()
            // Four blocks in flight (one per stage) from the first block returned on: the stages can overlap.
            #expect(g.blocksFed == min(b + 4, Self.blocks))
            #expect(block.index == b && block.startFrame == 3 * b)
            #expect(block.latents.backend === m.replicas[3].backend, "the last stage's device holds the clean latents")
            #expect(block.promptIndex == (b >= Self.switchAt ? 1 : 0))
            #expect(block.timings.forwards >= 4)
            out.append(try block.latents.toFloats())
        }
        let seconds = try g.stageSeconds()
        #expect(seconds.count == 4 && seconds.allSatisfy { $0.count == Self.blocks })
        return out
    }

    @Test func pipelineOnFourDevicesMatchesItsEmulation() throws {
        let m = try Self.models()
        let reference = try emulated(m)
        let spread = try pipelined(m)
        for b in 0..<Self.blocks { #expect(spread[b] == reference[b], "block \(b)") }
        // Negative control: without the stages' recache the blocks differ from the switch on, and only there.
        let plain = try pipelined(m, recache: false)
        #expect(plain[Self.switchAt - 1] == reference[Self.switchAt - 1])
        #expect(plain[Self.switchAt] != reference[Self.switchAt])
    }

    /// Through `Pipeline` (latents only), the switch given by the prompt script: the same latents again.
    @Test func pipelineStagesMatchTheEmulation() async throws {
        let m = try Self.models()
        let reference = try emulated(m)
        let second = try m.single.encodePrompt(m.second)
        let request = PipelineRequest(geometry: BlockGeometry(latentWidth: Self.latent.w, latentHeight: Self.latent.h),
                                      latentFrames: Self.blocks * 3, decode: false, schedule: Self.schedule)
        let pipeline = try Pipeline(model: ModelParts(dit: m.single), request: request,
                                    prompt: try m.single.encodePrompt(m.first), noise: PhiloxNoise(seed: 7),
                                    script: { $0 == 3 * Self.switchAt ? second : nil }, timestepForcing: m.replicas)
        var got: [[Float]] = []
        for try await chunk in pipeline.chunks() { got.append(try chunk.block.latents.toFloats()) }
        #expect(got.count == Self.blocks)
        for b in 0..<min(got.count, Self.blocks) { #expect(got[b] == reference[b], "block \(b)") }
    }

    /// Against LongLive's exact schedule on one device: block 0 is the same (its steps see only itself in both),
    /// every later block is not. Prints the error relative to what the model changed (exact minus the noise).
    @Test func differsFromLongLivesExactSchedule() throws {
        let m = try Self.models(devices: 1)
        let tf = try emulated(m)
        let exact = try StreamingGenerator(model: m.single, prompt: try m.single.encodePrompt(m.first),
                                           latentHeight: Self.latent.h, latentWidth: Self.latent.w,
                                           schedule: Self.schedule, noise: PhiloxNoise(seed: 7))
        let noise = PhiloxNoise(seed: 7)
        var lines: [String] = []
        for b in 0..<Self.blocks {
            if b == Self.switchAt { exact.switchPrompt(to: try m.single.encodePrompt(m.second)) }
            let e = try exact.nextBlock().latents.toFloats()
            let x = try noise.initial(startFrame: 3 * b, count: 3, shape: (Self.latent.h, Self.latent.w, 16),
                                      on: m.single.backend).toFloats()
            let err = mse(tf[b], e), contribution = mse(e, x)
            if b == 0 {
                #expect(tf[b] == e, "block 0 sees only itself under both schedules")
            } else {
                #expect(err > 1e-6 * contribution, "block \(b) must differ from the exact schedule")
            }
            lines.append(String(format: "block %d: nmse %.3e of the model's contribution (nmse %.3e of the output)",
                                b, err / contribution, err / mse(e, [Float](repeating: 0, count: e.count))))
        }
        print("timestep forcing against LongLive's exact schedule (random DiT):\n  " + lines.joined(separator: "\n  "))
    }

    @Test func misplacedReplicasAreClearErrors() throws {
        let m = try Self.models()
        let prompt = try m.single.encodePrompt(m.first)
        func make(_ replicas: [WanDiT], _ schedule: StreamingSchedule = Self.schedule) throws {
            _ = try TimestepForcingGenerator(replicas: replicas, prompt: prompt, latentHeight: 4, latentWidth: 6,
                                             schedule: schedule, noise: PhiloxNoise(seed: 1))
        }
        // Fewer devices than steps: steps are not grouped.
        #expect(throws: ReelError.self) { try make(Array(m.replicas.prefix(3))) }
        // A device named twice.
        #expect(throws: ReelError.self) { try make([m.replicas[0], m.replicas[1], m.replicas[2], m.replicas[1]]) }
        // A sequence-parallel replica.
        let comm = try CPUCommunicator(ranks: 2, gemm: .own)
        let weights = try WanDiT.randomWeights(Self.config, on: comm.streams[0], seed: 21)
        let sp = try WanDiT.loadSequenceParallel(from: weights, heads: 12, communicator: comm).withTextLength(8)
        let other = (0..<2).map { CPUBackend(gemm: .own, device: CPUDevice(ordinal: 10 + $0)) }
        let rest = try other.map { try WanDiT.load(from: weights, heads: 12, backend: $0).withTextLength(8) }
        #expect(throws: ReelError.self) { try make([sp, m.replicas[1], rest[0], rest[1]]) }
        // A sink larger than a block.
        let wide = StreamingSchedule(framesPerBlock: 1, sinkFrames: 3, attentionFrames: 9, denoisingSteps: [1000, 750, 500, 250])
        #expect(throws: ReelError.self) { try make(m.replicas, wide) }
        try make(m.replicas)
    }

    func mse(_ a: [Float], _ b: [Float]) -> Double {
        zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) } / Double(max(a.count, 1))
    }
}

/// The decoder's place in a timestep-forcing pipeline from measured times (made-up latencies: no timing is measured).
@Suite struct TimestepForcingPlacementTests {
    @Test func decoderGoesBesideTheFastestStepOrOnASpareDevice() {
        // Step 2 is fastest: beside it the slowest device takes max(40, 42, 30 + 15) = 45 ms.
        let steps = [0.040, 0.042, 0.030, 0.041]
        let candidates = TimestepForcingPlacement.candidates(stepSeconds: steps, decodeSeconds: 0.015, spareDevice: true)
        #expect(candidates.map(\.decoder) == [.besideStep(0), .besideStep(1), .besideStep(2), .besideStep(3), .ownDevice])
        #expect(zip(candidates.map(\.interval), [0.055, 0.057, 0.045, 0.056, 0.042]).allSatisfy { abs($0 - $1) < 1e-12 })
        let shared = TimestepForcingPlacement.best(stepSeconds: steps, decodeSeconds: 0.015, spareDevice: false)
        #expect(shared.decoder == .besideStep(2) && abs(shared.interval - 0.045) < 1e-12)
        #expect(TimestepForcingPlacement.best(stepSeconds: steps, decodeSeconds: 0.015, spareDevice: true).decoder == .ownDevice)
        // A decoder small enough to hide beside the fastest step: a spare device gains nothing, so it is not taken.
        let hidden = TimestepForcingPlacement.best(stepSeconds: steps, decodeSeconds: 0.005, spareDevice: true)
        #expect(hidden.decoder == .besideStep(2) && abs(hidden.interval - 0.042) < 1e-12)
        // Equal steps (as by construction): the first among equals.
        #expect(TimestepForcingPlacement.best(stepSeconds: [0.04, 0.04], decodeSeconds: 0.01, spareDevice: false).decoder
                == .besideStep(0))
    }
}
