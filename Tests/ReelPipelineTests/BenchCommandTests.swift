import Foundation
import Testing

/// `reel bench`'s long-run options as the built executable takes them, with the shipped tiny model on the CPU at
/// 64x64 (skipped where the executable is absent): `--switch-every` switches the prompt at every N'th block besides
/// `--switch-block`, each switch with its recache and left out of the medians; `--denoising-steps` runs LongLive
/// 1.0's schedule with other steps and the DiT's floor follows them; malformed values are refused with a message; the
/// 5B's bench decodes with TAEHV (taew2_2).
@Suite(.serialized) struct BenchCommandTests {
    static let executable = CommandRunner.executable
    static let common = ["bench", "--backend", "cpu", "--model", PlacementCommandTests.tiny, "--size", "64x64", "--threads", "2",
                         "--decoder", "none"]

    /// The DiT's floor per block over the floor of a prompt switch's recache.
    func blockOverRecache(_ output: String) -> Double? {
        guard let block = floor(of: "DiT per block", in: output), let recache = floor(of: "prompt switch: recache", in: output),
              recache > 0 else { return nil }
        return block / recache
    }

    /// The value in the floor column of a figure's row ("DiT per block   105.5 ms   7.7 ms   7.3%").
    func floor(of figure: String, in output: String) -> Double? {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix(figure) }) else { return nil }
        let fields = line.dropFirst(32).split(separator: " ")
        return fields.count >= 3 ? Double(fields[2]) : nil
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: executable)))
    func switchesEveryNBlocksAndRunsTheStepsAsked() throws {
        let run = try CommandRunner.reelWithOutput(Self.common + ["--blocks", "7", "--warmup", "1", "--switch-block", "3",
                                                                  "--switch-every", "2", "--denoising-steps", "1000, 500"])
        #expect(run.status == 0, "\(run.errors)")
        #expect(run.output.contains("7 blocks, 4 switches (blocks 2, 3, 4, ...)"), "\(run.output)")
        #expect(run.output.contains("prompt switch: recache (mean)"))
        // Blocks 0..<7 timed, one DiT time each.
        let blocks = run.output.split(separator: "\n").first { $0.hasPrefix("KV cache") }?.split(separator: ";").last
        #expect(blocks?.split(separator: " ").filter { Double($0) != nil }.count == 7, "\(blocks ?? "")")

        // The floor follows the steps: a block is (steps + 1) forwards of the same shapes, so 2 steps need 3/5 of the
        // 4 steps' FLOPs. Each run measures its own matmul rate (noisy on a loaded machine), so each run's block floor
        // is taken against its recache floor, one forward whatever the steps.
        let four = try CommandRunner.reelWithOutput(Self.common + ["--blocks", "3", "--warmup", "1", "--switch-block", "2"])
        #expect(four.status == 0, "\(four.errors)")
        #expect(four.output.contains("3 blocks, switch at block 2"))
        if let two = blockOverRecache(run.output), let four = blockOverRecache(four.output) {
            #expect(abs(two / four - 0.6) < 0.03, "a block's floor over a recache's: 2 steps \(two), 4 steps \(four)")
        } else {
            Issue.record("no floors in the output:\n\(run.output)\n\(four.output)")
        }
    }

    /// LongLive 2.0's bench with TAEHV as taew2_2 (random weights of its shape) decoding beside the DiT: 29 frames, then
    /// 32 a block, at 16 pixels a latent.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: executable)))
    func longLive2BenchDecodesWithTAEW22() throws {
        let run = try CommandRunner.reelWithOutput(["bench", "--backend", "cpu", "--model", "5b-small", "--decoder", "tiny", "--blocks", "3",
                                                    "--warmup", "1", "--switch-block", "0", "--size", "128x64", "--threads", "2"])
        #expect(run.status == 0, "\(run.errors)")
        #expect(run.output.contains("decoder TAEHV (taew2_2), 128x64"), "\(run.output)")
        #expect(run.output.contains("decode per block (32 frames)") && run.output.contains("decoder alone per block"))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: executable)))
    func malformedValuesAreRefused() throws {
        let cases: [([String], String)] = [
            (["--denoising-steps", "1000,x"], "comma separated"),
            (["--denoising-steps", "500,750"], "must decrease"),
            (["--denoising-steps", "2000,500"], "1...1000"),
            (["--denoising-steps", ""], "comma separated"),
            (["--switch-every=-1"], "--switch-every must be 0"),
            (["--switch-every", "2", "--input"], "LongLive 1.0's plain bench"),
        ]
        for (arguments, message) in cases {
            let run = try CommandRunner.reelWithOutput(Self.common + arguments, keepOutput: false)
            #expect(run.status != 0 && run.errors.contains(message), "\(arguments): \(run.errors)")
        }
    }
}
