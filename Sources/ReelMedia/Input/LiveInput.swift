import Foundation
import ReelCore

/// Frames pushed in from elsewhere (a WebSocket's client, a camera callback) and read by a pipeline's Input
/// stage: a bounded queue between a producer that must never block and a consumer that waits.
///
/// A live source keeps its latest frames: when `capacity` frames wait, a push drops the oldest (counted in
/// `framesDropped`), so a pipeline slower than the source converts the freshest frames rather than falling
/// further behind. `finish()` ends the input cleanly (queued frames are still read, then `nextFrame()`
/// returns nil); `fail(_:)` ends it with an error. As with the Y4M reader on a pipe, `stallTimeout` seconds
/// without a frame make `nextFrame()` throw; `holdStallClock(true)` stops that clock while the consumer is
/// paused on purpose (the clock starts afresh when released), and `restartStallClock()` starts it afresh when the
/// producer is known to be alive (it waits for output before it sends more). Each pushed frame is one frame of the video (`frameRate` nil:
/// the producer paces them), and frames may change size (`FittedInput` fits each on its own); `width` and
/// `height` are the latest frame's, 0 before the first.
public final class LiveInput: VideoInput, @unchecked Sendable {
    public let source: String
    /// Frames that may wait to be read; more drop the oldest.
    public let capacity: Int
    /// Seconds `nextFrame()` waits for a frame before it throws; nil waits for ever.
    public let stallTimeout: Double?
    public var frameRate: FrameRate? { nil }
    public var width: Int { condition.withLock { size.width } }
    public var height: Int { condition.withLock { size.height } }
    /// Frames pushed, and dropped unread because the queue was full.
    public var framesReceived: Int { condition.withLock { received } }
    public var framesDropped: Int { condition.withLock { dropped } }

    /// What happened to a pushed frame.
    public enum Push: Sendable, Equatable {
        /// Queued.
        case queued
        /// Queued, and the oldest waiting frame dropped to make room.
        case droppedOldest
        /// Refused: the input has ended (finished, failed or closed).
        case ended
    }

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [RGBFrames] = []
    private var size = (width: 0, height: 0)
    private var received = 0, dropped = 0
    private var finished = false, closed = false
    private var failure: (any Error)?
    private var stallClockHeld = false
    /// When the stall clock last started: a wait began, or the clock was released.
    private var clockStart = Date()

    public init(source: String, capacity: Int = 8, stallTimeout: Double? = nil) throws {
        guard capacity >= 1 else {
            throw ReelError.invalidArgument(op: "LiveInput", message: "capacity must be at least 1, got \(capacity)")
        }
        if let t = stallTimeout, !(t > 0 && t.isFinite) {
            throw ReelError.invalidArgument(op: "LiveInput", message: "stall timeout must be positive, got \(t)")
        }
        self.source = source
        self.capacity = capacity
        self.stallTimeout = stallTimeout
    }

    /// Adds a frame (the first of `frame` if it holds several) without waiting.
    @discardableResult
    public func push(_ frame: RGBFrames) -> Push {
        condition.withLock {
            guard !finished, !closed, failure == nil else { return .ended }
            received += 1
            queue.append(frame)
            condition.broadcast()
            guard queue.count > capacity else { return .queued }
            queue.removeFirst()
            dropped += 1
            return .droppedOldest
        }
    }

    /// Stops (true) or restarts (false) the stall clock: a paused session waits for frames as long as it is paused.
    public func holdStallClock(_ held: Bool) {
        condition.withLock {
            stallClockHeld = held
            clockStart = Date()
            condition.broadcast()
        }
    }

    /// Starts the stall clock afresh (a reader waiting now has `stallTimeout` seconds from here).
    public func restartStallClock() {
        condition.withLock {
            clockStart = Date()
            condition.broadcast()
        }
    }

    /// Ends the input cleanly: the frames queued are still read.
    public func finish() { condition.withLock { finished = true; condition.broadcast() } }

    /// Ends the input with `error`, which the next `nextFrame()` throws (queued frames are discarded).
    public func fail(_ error: any Error) {
        condition.withLock {
            if failure == nil, !closed { failure = error; queue.removeAll() }
            condition.broadcast()
        }
    }

    public func nextFrame() throws -> RGBFrames? {
        condition.lock()
        defer { condition.unlock() }
        clockStart = Date()
        while true {
            if closed { return nil }
            if let failure { throw failure }
            if !queue.isEmpty {
                let frame = queue.removeFirst()
                size = (frame.width, frame.height)
                return frame.count == 1 ? frame
                    : try RGBFrames(width: frame.width, height: frame.height, pixels: Array(frame.frame(0)))
            }
            if finished { return nil }
            if let stallTimeout, !stallClockHeld {
                let deadline = clockStart.addingTimeInterval(stallTimeout)
                let timedOut = !condition.wait(until: deadline) && Date() >= deadline
                if timedOut, !stallClockHeld, queue.isEmpty, !finished, !closed, failure == nil {
                    throw ReelError.badFile(path: source, message: "no frame for \(stallTimeout) s (stall timeout)")
                }
            } else {
                condition.wait()
            }
        }
    }

    /// Ends the input at once (queued frames are dropped); `nextFrame()` returns nil from now on.
    public func close() {
        condition.withLock {
            closed = true
            queue.removeAll()
            condition.broadcast()
        }
    }
}
