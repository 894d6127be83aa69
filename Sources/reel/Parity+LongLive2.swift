import ArgumentParser
import ReelModels
import ReelPipeline

/// `reel parity --longlive2`: Reel against the LongLive 2.0 fixture (tools/fixtures/dit/make_longlive2_fixture.py).
extension Parity {
    func longLive2() throws {
        let dtype = backendOptions.storageType
        let tolerance = self.tolerance ?? (dtype == .f32 ? 1e-4 : 3e-2)
        let parity = try LongLive2Parity(folder: fixture, backend: try backendOptions.make(), dtype: dtype)
        print("LongLive 2.0 parity on \(parity.backend.name) in \(dtype), tolerance \(tolerance)")
        print("run                            whole video   worst block   verdict (on the worst block)")
        // As for 1.0: the float32 run proves the fixture tells right from wrong (wrong runs at least 10x past the
        // tolerance); in bf16 the faithful error is both sides' rounding, so wrong runs are only reported.
        var failed = false
        var runs = LongLive2Parity.runs
        // LongLive 2.0's FP8 PTQ (every block linear, per row) and the FFN alone, and the same in INT8: reported,
        // not judged; the wrong runs above say how far a real mistake lands.
        for (format, on) in [(QuantizedFormat.fp8, fp8), (.int8, int8)] where on {
            for (name, layers) in [("all linears", QuantizedLayers.allLinears), ("FFN", .feedForward)] {
                runs.append(.init(name: "\(format.name) \(name), absolute", testCase: .absolute,
                                  variant: .init(schedule: LongLive2Parity.referenceSchedule(.absolute),
                                                 quantization: LinearQuantization(format: format, layers: layers)),
                                  isFaithful: false))
            }
        }
        for run in runs {
            let r = try parity.run(run.testCase, run.variant)
            let e = r.maxBlockError
            let verdict: String
            if run.isFaithful {
                verdict = e <= tolerance ? "ok" : "FAIL: above tolerance \(tolerance)"
                failed = failed || e > tolerance
            } else if let q = run.variant.quantization {
                verdict = "(\(q.format.name) rounding: reported, not judged)"
            } else if dtype == .f32 {
                verdict = e >= 10 * tolerance ? "ok (wrong, and caught)" : "FAIL: a wrong run within 10x of the tolerance"
                failed = failed || e < 10 * tolerance
            } else {
                verdict = "(bf16: see the f32 run for the verdict)"
            }
            print(run.name.padding(toLength: 31, withPad: " ", startingAt: 0)
                  + String(format: "%.3e     %.3e     ", r.relativeError, e) + verdict)
        }
        if failed { throw ExitCode.failure }
    }
}
