import Foundation
import ReelCore

/// Prompts and the latent frames at which each takes over (LongLive's interactive input:
/// a JSONL line `{"prompts": [p0, ..., pk]}` plus `switch_frame_indices`).
///
/// A switch at frame i takes effect at the first block that starts at or after i (LongLive checks
/// `current_start_frame >= switch_frame` at block starts).
public struct PromptSchedule: Sendable, Equatable {
    public var prompts: [String]
    /// `prompts.count - 1` latent frame indices, strictly increasing.
    public var switchFrames: [Int]

    public init(prompts: [String], switchFrames: [Int]) {
        self.prompts = prompts
        self.switchFrames = switchFrames
    }

    /// Checks the schedule against a run of `totalFrames` latent frames before any work starts.
    public func validate(totalFrames: Int, maxPromptCharacters: Int = 10_000) throws {
        guard !prompts.isEmpty else { throw ReelError.input("the schedule has no prompts") }
        for (i, p) in prompts.enumerated() {
            if p.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                throw ReelError.input("prompt \(i) is empty")
            }
            if p.count > maxPromptCharacters {
                throw ReelError.input("prompt \(i) has \(p.count) characters; the limit is \(maxPromptCharacters)")
            }
        }
        guard switchFrames.count == prompts.count - 1 else {
            throw ReelError.input("\(prompts.count) prompts need \(prompts.count - 1) switch frames, got \(switchFrames.count)")
        }
        for (i, f) in switchFrames.enumerated() {
            guard f > 0 else { throw ReelError.input("switch frame \(f) (switch \(i + 1)) must be positive") }
            guard f < totalFrames else {
                throw ReelError.input("switch frame \(f) (switch \(i + 1)) is past the end of the video (\(totalFrames) latent frames)")
            }
            if i > 0, f <= switchFrames[i - 1] {
                throw ReelError.input("switch frames must increase: \(switchFrames[i - 1]) then \(f)")
            }
        }
    }

    /// The prompt index in force for a block starting at `frame`.
    public func promptIndex(atBlockStart frame: Int) -> Int {
        switchFrames.filter { frame >= $0 }.count
    }

    /// Parses one LongLive JSONL line: `{"prompts": [...]}`, optionally with Reel's
    /// `"switch_frames": [...]` (else `switchFrames` is used).
    public static func parseJSONLine(_ line: String, switchFrames: [Int]? = nil) throws -> PromptSchedule {
        guard let data = line.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ReelError.input("not a JSON object: \(line.prefix(80))")
        }
        let known: Set<String> = ["prompts", "switch_frames", "switch_frame_indices"]
        if let unknown = object.keys.first(where: { !known.contains($0) }) {
            throw ReelError.input("unknown field '\(unknown)' in schedule line (expected prompts, switch_frames)")
        }
        guard let prompts = object["prompts"] as? [String] else {
            throw ReelError.input("the schedule line needs \"prompts\": an array of strings")
        }
        var frames = switchFrames ?? []
        if let given = object["switch_frames"] ?? object["switch_frame_indices"] {
            guard let ints = given as? [Int] else { throw ReelError.input("switch_frames must be an array of integers") }
            frames = ints
        }
        return PromptSchedule(prompts: prompts, switchFrames: frames)
    }

    /// Reads the schedules of a JSONL file (one per non-empty line).
    public static func load(jsonl path: String, switchFrames: [Int]? = nil) throws -> [PromptSchedule] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ReelError.input("cannot read schedule file \(path)")
        }
        // Line numbers count blank lines too, so an error points at the line a person sees.
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var schedules: [PromptSchedule] = []
        for (i, line) in lines.enumerated() where !line.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            do { schedules.append(try parseJSONLine(line, switchFrames: switchFrames)) } catch let e as ReelError {
                throw ReelError.input("\(path):\(i + 1): \(e.description)")
            }
        }
        guard !schedules.isEmpty else { throw ReelError.input("\(path) holds no schedule lines") }
        return schedules
    }
}
