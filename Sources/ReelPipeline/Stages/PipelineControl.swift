import Foundation

/// A message to a running pipeline. All of them take effect at the next block boundary of the Generator
/// stage: the block in flight is finished and handed on.
public enum PipelineControl: Sendable, Equatable {
    /// Generate from the next block on with this prompt (encoded by the Conditioner, with KV-recache).
    /// When several arrive between two blocks, the newest wins.
    case switchPrompt(String)
    /// Hold the Generator before its next block (the stages after it drain what is in flight).
    case pause
    case resume
    /// End the video after the block in flight.
    case stop
    /// End the video once the prompt switches sent before it have started (a live prompt source that has
    /// ended: the last prompt gets its block, and the video at least one).
    case finish
}

/// The control channel: any thread sends, the Generator stage reads between blocks. Unbounded and never
/// blocking the sender (a person steering a video must not wait for a block).
public final class ControlChannel: @unchecked Sendable {
    private let condition = NSCondition()
    private var messages: [PipelineControl] = []

    public init() {}

    public func send(_ message: PipelineControl) {
        condition.withLock {
            messages.append(message)
            condition.broadcast()
        }
    }

    /// The messages sent since the last call; with `waiting`, waits for at least one first.
    func take(waiting: Bool) -> [PipelineControl] {
        condition.lock()
        defer { condition.unlock() }
        while waiting && messages.isEmpty { condition.wait() }
        defer { messages.removeAll() }
        return messages
    }
}

/// What the Generator stage does with control messages between blocks.
struct ControlState {
    var paused = false
    var stopped = false
    /// `finish` came: stop at the first block boundary with no prompt left to apply.
    var finishing = false
    /// A live prompt switch not applied yet (the newest text).
    var prompt: String?

    mutating func apply(_ messages: [PipelineControl]) {
        for m in messages {
            switch m {
            case let .switchPrompt(text): prompt = text
            case .pause: paused = true
            case .resume: paused = false
            case .stop: stopped = true
            case .finish: finishing = true
            }
        }
    }
}
