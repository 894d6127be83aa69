import ArgumentParser
import Foundation
import ReelCore
import ReelCPU
import ReelModels
import ReelPipeline

/// `reel parity`: Reel against a LongLive v1.0 fixture folder, with the wrong variants that prove the
/// fixture can tell (no recache, no LoRA, no sink).
struct Parity: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare Reel's streaming generation with a LongLive v1.0 fixture (made by tools/fixtures/dit).",
        discussion: """
        Prints the error relative to the model's contribution (||reel - longlive|| / ||longlive - v0||, \
        v0 being what a zero-velocity model makes of the same noise) for the faithful run and for three \
        deliberately wrong ones. Exits non-zero when the faithful run is past --tolerance or a wrong one \
        is not at least 10x past it.
        """
    )

    @Option(help: "Fixture folder (longlive_base.pt, lora.pt, case.safetensors; with --sdv2: weights.safetensors, case.s2/s4.safetensors).")
    var fixture: String
    @Flag(help: "A StreamDiffusionV2 fixture (tools/fixtures/dit/make_sdv2_fixture.py): video-to-video, both step counts, its wrong variants.")
    var sdv2 = false
    @Flag(help: "A LongLive 2.0 fixture (tools/fixtures/dit/make_longlive2_fixture.py): absolute, relative-RoPE, i2v, clean-recache, guidance and LoRA runs, their wrong variants.")
    var longlive2 = false
    @Option(help: "Largest acceptable relative error of the faithful run (default: 1e-4 in f32, 3e-2 in bf16).")
    var tolerance: Double?
    @Flag(help: "Also run the faithful video with the DiT's FFN in FP8, then every block linear in FP8 (--fp8, --fp8-layers all of generate; for --longlive2 the latter is LongLive 2.0's own FP8 PTQ): their errors are reported, not judged.")
    var fp8 = false
    @Flag(help: "Also run the faithful video with the DiT's FFN in INT8, then every block linear in INT8 (--int8, --int8 --fp8-layers all of generate; W8A8 for GPUs without FP8): their errors are reported, not judged.")
    var int8 = false
    @Option(name: .customLong("kv-cache"),
            help: ArgumentHelp("fp8: also run the faithful video with the self-attention KV cache in FP8 (--kv-cache fp8 of generate): its error is reported, not judged.",
                               valueName: "bf16|fp8"))
    var kvCache = KVCacheStorage.model
    @Option(help: ArgumentHelp("fp8: also run the faithful video with the DiT's self-attention in FP8 (--attention fp8 of generate): its error is reported, not judged, beside the no-sink run's.",
                               valueName: "bf16|fp8"))
    var attention = AttentionPrecision.model
    @OptionGroup var backendOptions: BackendOptions

    func validate() throws {
        guard FileManager.default.fileExists(atPath: fixture) else { throw ValidationError("--fixture: \(fixture) does not exist.") }
        if sdv2 && longlive2 { throw ValidationError("--sdv2 and --longlive2 name different fixtures: give one.") }
        if kvCache == .fp8 && (sdv2 || longlive2) {
            throw ValidationError("--kv-cache fp8 runs on LongLive 1.0's fixture only (its ring cache); drop --sdv2 / --longlive2.")
        }
        if attention == .fp8 && (sdv2 || longlive2) {
            throw ValidationError("--attention fp8 runs on LongLive 1.0's fixture only; drop --sdv2 / --longlive2.")
        }
    }

    func run() async throws {
        if sdv2 { return try streamDiffusionV2() }
        if longlive2 { return try longLive2() }
        let dtype = backendOptions.storageType
        let tolerance = self.tolerance ?? (dtype == .f32 ? 1e-4 : 3e-2)
        let parity = try LongLiveParity(folder: fixture, backend: try backendOptions.make(),
                                        communicator: try backendOptions.makeCommunicator(),
                                        parallelism: backendOptions.parallelism.scheme, dtype: dtype)
        let spread = parity.communicator.map { ", DiT over \($0.name) by \(parity.parallelism.name)" } ?? ""
        print("LongLive parity on \(parity.backend.name)\(spread) in \(dtype), tolerance \(tolerance)")
        var runs: [(String, LongLiveParity.Variant)] = [
            ("faithful", .init()), ("no recache", .init(recache: false)), ("no LoRA", .init(lora: false)),
            ("no sink", .init(schedule: StreamingSchedule(sinkFrames: 0, attentionFrames: 9))),
        ]
        for (format, on) in [(QuantizedFormat.fp8, fp8), (.int8, int8)] where on {
            runs += [QuantizedLayers.feedForward, .allLinears].map { layers in
                let q = LinearQuantization(format: format, layers: layers)
                return (q.description, .init(quantization: q))
            }
        }
        if kvCache == .fp8 { runs.append(("FP8 KV cache", .init(kvCache: .fp8))) }
        if attention == .fp8 { runs.append(("FP8 attention", .init(attention: .fp8))) }
        var failed = false
        // The proof that the fixture can tell right from wrong is the float32 run: there a wrong variant
        // must land at least 10x past the tolerance. In bf16 the faithful error is both sides' rounding,
        // so wrong variants are reported as a multiple of it without a verdict.
        print("run            whole video   worst block   x faithful   verdict (on the worst block)")
        var faithful = 0.0, worst: [String: Double] = [:]
        for (i, (name, variant)) in runs.enumerated() {
            let r = try await parity.run(variant)
            let e = r.maxBlockError
            worst[name] = e
            if i == 0 { faithful = e }
            let verdict: String
            if i == 0 {
                verdict = e <= tolerance ? "ok" : "FAIL: above tolerance \(tolerance)"
                failed = failed || e > tolerance
            } else if let q = variant.quantization {
                verdict = "(\(q.format.name) rounding: reported, not judged)"
            } else if variant.kvCache != .model || variant.attention != .model {
                verdict = "(FP8 rounding: reported, not judged)"
            } else if dtype == .f32 {
                verdict = e >= 10 * tolerance ? "ok (wrong, and caught)" : "FAIL: a wrong run within 10x of the tolerance"
                failed = failed || e < 10 * tolerance
            } else {
                verdict = "(bf16: see the f32 run for the verdict)"
            }
            print(name.padding(toLength: 15, withPad: " ", startingAt: 0)
                  + String(format: "%.3e     %.3e     %8.1f     ", r.relativeError, e, e / max(faithful, 1e-30)) + verdict)
        }
        // FP8's error against a wrong model's: dropping the sink is the smallest deliberate mistake of the table.
        if let sink = worst["no sink"], sink > 0 {
            for name in ["FP8 attention", "FP8 KV cache"] {
                if let e = worst[name] { print(String(format: "%@: worst block %.3e = %.3f x the no-sink run's", name, e, e / sink)) }
            }
        }
        if failed { throw ExitCode.failure }
    }

    /// StreamDiffusionV2's fixture: the faithful run of each case against the reference's output, and each
    /// wrong variant against the faithful output (it must land at least 10x past the tolerance).
    private func streamDiffusionV2() throws {
        let dtype = backendOptions.storageType
        guard dtype == .f32 else { throw ValidationError("the StreamDiffusionV2 fixture is float32: add --dtype f32.") }
        let tolerance = self.tolerance ?? 1e-5
        let parity = StreamV2VParity(folder: fixture, backend: try backendOptions.make(), dtype: dtype)
        print("StreamDiffusionV2 parity on \(parity.backend.name) in \(dtype), tolerance \(tolerance) (||reel - reference|| / ||reference||)")
        print("steps  run               vs its output   vs faithful   verdict")
        var failed = false
        for steps in [2, 4] {
            for variant in StreamV2VParity.Variant.allCases {
                let own = try parity.run(steps: steps, variant: variant)
                var line = "\(steps)      " + variant.rawValue.padding(toLength: 18, withPad: " ", startingAt: 0)
                    + String(format: "%.3e", own.relativeError)
                let ok = own.relativeError <= tolerance
                if variant == .faithful {
                    line += "                   " + (ok ? "ok" : "FAIL: above tolerance")
                    failed = failed || !ok
                } else {
                    let apart = try parity.run(steps: steps, variant: variant, compareTo: .faithful).relativeError
                    let caught = apart >= 10 * tolerance
                    line += String(format: "       %.3e     ", apart) + (ok && caught ? "ok (reproduced, and apart)" : "FAIL")
                    failed = failed || !ok || !caught
                }
                print(line)
            }
        }
        if failed { throw ExitCode.failure }
    }
}
