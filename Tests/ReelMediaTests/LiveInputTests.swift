import Foundation
import ReelCore
@testable import ReelMedia
import Testing

/// The push-fed live input: frames in order, the oldest dropped when the queue is full, a clean end, an
/// error end, the stall timeout, and a reader blocked in `nextFrame()` woken by a push from another thread.
@Suite struct LiveInputTests {
    func frame(_ v: UInt8, width: Int = 4, height: Int = 2) throws -> RGBFrames { try solidFrame(width: width, height: height, [v, v, v]) }

    @Test func framesInOrderOldestDroppedCleanEnd() throws {
        let input = try LiveInput(source: "socket", capacity: 2)
        #expect(input.width == 0 && input.frameRate == nil)
        #expect(input.push(try frame(1)) == .queued)
        #expect(input.push(try frame(2, width: 6)) == .queued)
        #expect(input.push(try frame(3)) == .droppedOldest)
        #expect(input.framesReceived == 3 && input.framesDropped == 1)
        input.finish()
        #expect(input.push(try frame(4)) == .ended)
        #expect(try input.nextFrame()?.pixels.first == 2)
        #expect(input.width == 6, "the latest frame's size")
        #expect(try input.nextFrame()?.pixels.first == 3)
        #expect(try input.nextFrame() == nil)
        #expect(try input.nextFrame() == nil)
    }

    @Test func failureStallAndClose() throws {
        let failing = try LiveInput(source: "socket")
        failing.push(try frame(1))
        failing.fail(ReelError.input("bad frame"))
        #expect(throws: ReelError.input("bad frame")) { _ = try failing.nextFrame() }

        let stalled = try LiveInput(source: "socket", stallTimeout: 0.05)
        let start = Date()
        #expect(throws: ReelError.badFile(path: "socket", message: "no frame for 0.05 s (stall timeout)")) { _ = try stalled.nextFrame() }
        #expect(Date().timeIntervalSince(start) < 5)

        // A held clock waits past the timeout; released, it counts afresh.
        let held = try LiveInput(source: "socket", stallTimeout: 0.1)
        held.holdStallClock(true)
        let got = Got()
        Thread { got.set((try? held.nextFrame())?.pixels.first) }.start()
        Thread.sleep(forTimeInterval: 0.3)
        held.push(try frame(9))
        #expect(waitFor { got.value == 9 }, "the held reader got the frame pushed after the timeout")
        held.holdStallClock(false)
        #expect(throws: ReelError.self) { _ = try held.nextFrame() }

        // Restarted by the consumer's side: a reader waits its timeout from the restart.
        let restarted = try LiveInput(source: "socket", stallTimeout: 0.3)
        let started = Date()
        Thread.detachNewThread {
            for _ in 0..<3 { Thread.sleep(forTimeInterval: 0.2); restarted.restartStallClock() }
        }
        #expect(throws: ReelError.self) { _ = try restarted.nextFrame() }
        #expect(Date().timeIntervalSince(started) > 0.7, "the clock restarted three times before it ran out")

        let closed = try LiveInput(source: "socket")
        closed.push(try frame(1))
        closed.close()
        #expect(try closed.nextFrame() == nil)
        #expect(closed.push(try frame(2)) == .ended)
        #expect(throws: ReelError.self) { _ = try LiveInput(source: "x", capacity: 0) }
        #expect(throws: ReelError.self) { _ = try LiveInput(source: "x", stallTimeout: -1) }
    }

    /// A reader waiting on another thread gets frames pushed later, then nil at `finish()`; through
    /// `FittedInput`, each frame of whatever size comes out at the target size.
    @Test func readerWaitsForPushes() async throws {
        let input = try LiveInput(source: "socket", stallTimeout: 30)
        let fitted = try FittedInput(input, width: 8, height: 8, frameRate: try FrameRate(16))
        let reading = UncheckedSendable(fitted)   // only the reader uses it
        let reader = Task {   // the reads block: on a thread of their own
            try await onThread { () throws -> [Int] in
                var sizes: [Int] = []
                while let f = try reading.value.nextFrame() { sizes.append(f.width * 100 + f.height) }
                return sizes
            }
        }
        for (i, size) in [(16, 8), (4, 4), (10, 30)].enumerated() {
            try await Task.sleep(for: .milliseconds(20))
            input.push(try frame(UInt8(i), width: size.0, height: size.1))
        }
        try await Task.sleep(for: .milliseconds(20))
        input.finish()
        #expect(try await reader.value == [808, 808, 808])
    }
}

final class Got: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: UInt8?
    var value: UInt8? { lock.withLock { stored } }
    func set(_ v: UInt8?) { lock.withLock { stored = v } }
}

func waitFor(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date(timeIntervalSinceNow: seconds)
    while Date() < deadline {
        if condition() { return true }
        Thread.sleep(forTimeInterval: 0.01)
    }
    return condition()
}
