import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking or long work (model calls, pipes, sockets, waits on other threads) on a thread of its own and
/// suspends the calling task until it ends.
///
/// Swift's cooperative pool has one thread a core (two on a 2-core machine): work that blocks one of them, or computes
/// on it for seconds, stalls every task queued behind it - the server's sessions and, in `swift test`, every other
/// test. Anything that may block or run long leaves the pool through here.
public func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}

extension Process {
    /// Waits for the child to exit by polling `isRunning`, instead of `waitUntilExit()`, which spins the calling
    /// thread's run loop and has been reported to never return on Linux for a child that had exited (under load,
    /// off the main thread). With `timeout`, a child still running after it is killed (SIGKILL) and reaped; returns
    /// false in that case.
    @discardableResult
    public func waitForExit(timeout: Double? = nil) -> Bool {
        let deadline = timeout.map { Date(timeIntervalSinceNow: $0) }
        var pause: UInt32 = 1_000
        while isRunning {
            if let deadline, Date() >= deadline {
                kill(processIdentifier, SIGKILL)
                while isRunning { usleep(5_000) }
                return false
            }
            usleep(pause)
            pause = min(pause * 2, 20_000)
        }
        return true
    }
}
