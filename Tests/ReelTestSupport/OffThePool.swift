import Foundation
import ReelCore

/// Runs `work` on a thread of its own and waits for it, for tests whose blocking or long compute (an encoder pass, a
/// socket read) would otherwise hold one of the cooperative pool's threads - two on a 2-core machine, shared by every
/// test of the run and the server sessions some of them start.
///
/// `work` may capture non-Sendable state (models, encoders): the caller is suspended until it ends, so nothing else
/// touches that state meanwhile.
public func offThePool<T>(_ work: () throws -> T) async throws -> T {
    try await withoutActuallyEscaping(work) { escapable in
        let job = UncheckedSendable(escapable)   // runs while the caller waits: one user at a time
        return try await onThread { UncheckedSendable(try job.value()) }.value
    }
}
