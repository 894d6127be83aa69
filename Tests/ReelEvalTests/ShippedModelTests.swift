import Foundation
import Testing
import ReelCore
import ReelCPU
import ReelPipeline
@testable import ReelEval

/// The shipped tiny model (`Models/tiny`) on the CPU, measured by `reel eval`'s own runner with a small
/// fixed plan (seed 0): 10 prompts of 4 blocks, 8 switches at block 2 followed for 4 blocks, and a
/// 480-frame run. The bounds sit a margin below what the shipped weights measured with exactly this
/// plan (`reel eval --prompts 10 --switches 8 --long-frames 480`, figures in the comments), so a change
/// that breaks the model's loading, prompt path, cache, recache or decoder - or new weights that are
/// worse - fails here, while thread timing (which does not change the frames) cannot.
@Suite struct ShippedModelTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Models/tiny").path

    @Test func tinyModelStaysWithinItsMeasuredBounds() async throws {
        let model = try LoadedModel.load(files: try ModelFiles(folder: Self.folder), backend: CPUBackend(threads: 2))
        var options = EvalOptions()
        options.prompts = 10
        options.switches = 8
        options.longFrames = 480
        let source = try ModelFrameSource(model: model, frameSize: 128, summary: "Models/tiny")
        let report = try await EvalRunner(source: source, options: options).run()
        print(report.table)

        let adherence = try #require(report.adherence)
        func rate(_ a: Attribute) -> Double { adherence.rates.first { $0.attribute == a }?.rate ?? 0 }
        // Measured: background 100%, colour 100%, presence 94.4%, size 97.6%, motion 95.0%, speed 90.6%, shape 30.9%.
        #expect(rate(.background) >= 0.95 && rate(.colour) >= 0.95, "\(adherence.rates)")
        #expect(rate(.presence) >= 0.85 && rate(.size) >= 0.85, "\(adherence.rates)")
        #expect(rate(.motion) >= 0.8 && rate(.speed) >= 0.75, "\(adherence.rates)")
        #expect(rate(.shape) >= 0.2, "\(adherence.rates)")

        let switches = try #require(report.switches)
        // Measured: colour and background switches settle in the switch block itself (latency 0, never 0%);
        // the object jumps 3.4 px more than its typical per-frame motion at a switch, 3.6 px at plain seams.
        for kind in [SwitchKind.colour, .background] {
            let k = try #require(switches.byKind.first { $0.kind == kind })
            #expect(k.neverRate == 0 && (k.maxLatencyBlocks ?? 99) <= 1, "\(kind): \(k)")
        }
        #expect((switches.continuity.meanExcess ?? 99) <= 6, "\(switches.continuity)")
        #expect((report.seams.meanExcess ?? 99) <= 6, "\(report.seams)")

        let long = try #require(report.longRun)
        // Measured over 489 frames: the object present in 99-100% of every window, sharpness 0.98x of the
        // first window's, mean colour moved 0.1.
        #expect(long.windows.allSatisfy { ($0.rate(.presence) ?? 0) >= 0.9 }, "\(long.windows.map { $0.rate(.presence) ?? -1 })")
        #expect(abs((long.drift.sharpnessRatio ?? 0) - 1) <= 0.1 && long.drift.meanColourDistance <= 5, "\(long.drift)")
    }
}
