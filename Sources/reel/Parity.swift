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

    @Option(help: "Fixture folder (longlive_base.pt, lora.pt, case.safetensors).")
    var fixture: String
    @Option(help: "Largest acceptable relative error of the faithful run (default: 1e-4 in f32, 3e-2 in bf16).")
    var tolerance: Double?
    @Flag(help: "Also run the faithful video with the DiT's FFN in FP8 (--fp8 of generate): its error is reported, not judged.")
    var fp8 = false
    @OptionGroup var backendOptions: BackendOptions

    func validate() throws {
        guard FileManager.default.fileExists(atPath: fixture) else { throw ValidationError("--fixture: \(fixture) does not exist.") }
    }

    func run() async throws {
        let dtype = backendOptions.storageType
        let tolerance = self.tolerance ?? (dtype == .f32 ? 1e-4 : 3e-2)
        let parity = try LongLiveParity(folder: fixture, backend: try backendOptions.make(), dtype: dtype)
        print("LongLive parity on \(parity.backend.name) in \(dtype), tolerance \(tolerance)")
        var runs: [(String, LongLiveParity.Variant)] = [
            ("faithful", .init()), ("no recache", .init(recache: false)), ("no LoRA", .init(lora: false)),
            ("no sink", .init(schedule: StreamingSchedule(sinkFrames: 0, attentionFrames: 9))),
        ]
        if fp8 { runs.append(("FP8 FFN", .init(fp8: true))) }
        var failed = false
        // The proof that the fixture can tell right from wrong is the float32 run: there a wrong variant
        // must land at least 10x past the tolerance. In bf16 the faithful error is both sides' rounding,
        // so wrong variants are reported as a multiple of it without a verdict.
        print("run          whole video   worst block   x faithful   verdict (on the worst block)")
        var faithful = 0.0
        for (i, (name, variant)) in runs.enumerated() {
            let r = try await parity.run(variant)
            let e = r.maxBlockError
            if i == 0 { faithful = e }
            let verdict: String
            if i == 0 {
                verdict = e <= tolerance ? "ok" : "FAIL: above tolerance \(tolerance)"
                failed = failed || e > tolerance
            } else if variant.fp8 {
                verdict = "(FP8 rounding: reported, not judged)"
            } else if dtype == .f32 {
                verdict = e >= 10 * tolerance ? "ok (wrong, and caught)" : "FAIL: a wrong run within 10x of the tolerance"
                failed = failed || e < 10 * tolerance
            } else {
                verdict = "(bf16: see the f32 run for the verdict)"
            }
            print(name.padding(toLength: 13, withPad: " ", startingAt: 0)
                  + String(format: "%.3e     %.3e     %8.1f     ", r.relativeError, e, e / max(faithful, 1e-30)) + verdict)
        }
        if failed { throw ExitCode.failure }
    }
}
