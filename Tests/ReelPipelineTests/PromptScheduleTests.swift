import Foundation
import Testing
import ReelCore
@testable import ReelPipeline

/// LongLive-style schedules: parsed from JSONL, and every way they can be wrong caught before work starts.
@Suite struct PromptScheduleTests {
    @Test func parsesLongLiveLinesAndReelSwitchFrames() throws {
        let plain = try PromptSchedule.parseJSONLine(#"{"prompts": ["a", "b", "c"]}"#, switchFrames: [6, 18])
        #expect(plain == PromptSchedule(prompts: ["a", "b", "c"], switchFrames: [6, 18]))
        let inline = try PromptSchedule.parseJSONLine(#"{"prompts": ["a", "b"], "switch_frames": [9]}"#)
        #expect(inline.switchFrames == [9])
        try inline.validate(totalFrames: 21)
        // A switch takes effect at the first block starting at or after it.
        #expect([0, 6, 9, 12].map { inline.promptIndex(atBlockStart: $0) } == [0, 0, 1, 1])
    }

    @Test func rejectsMalformedLines() {
        for line in ["not json", #"{"prompts": "a"}"#, #"{"prompt": ["a"]}"#, #"{"prompts": ["a"], "switch_frames": ["x"]}"#] {
            #expect(throws: ReelError.self, "\(line)") { try PromptSchedule.parseJSONLine(line) }
        }
    }

    @Test(arguments: [
        (["a", "b"], [Int]()),          // one switch frame too few
        (["a", "b"], [6, 9]),           // one too many
        (["a", " "], [6]),              // empty prompt
        (["a", "b", "c"], [9, 6]),      // out of order
        (["a", "b", "c"], [6, 6]),      // not increasing
        (["a", "b"], [0]),              // switch at the first frame
        (["a", "b"], [21]),             // past the end
        ([String](), [Int]()),          // no prompts
    ])
    func rejectsBadSchedules(_ prompts: [String], _ frames: [Int]) {
        #expect(throws: ReelError.self) { try PromptSchedule(prompts: prompts, switchFrames: frames).validate(totalFrames: 21) }
    }

    @Test func loadsAFileAndNamesTheBadLine() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("reel-schedule-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "{\"prompts\": [\"a\", \"b\"]}\n\n{\"prompts\": 3}\n".write(toFile: path, atomically: true, encoding: .utf8)
        do {
            _ = try PromptSchedule.load(jsonl: path, switchFrames: [6])
            Issue.record("a bad line was accepted")
        } catch let error as ReelError {
            #expect(error.description.contains(":3:"), "\(error)")
        }
        #expect(throws: ReelError.self) { try PromptSchedule.load(jsonl: path + ".missing") }
    }
}
