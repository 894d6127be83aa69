import Foundation
import ReelCore

/// Runs `work` on a thread of its own and waits for it, for tests whose blocking or long compute (an encoder pass, a
/// socket read) would otherwise hold one of the cooperative pool's threads - two on a 2-core machine, shared by every
/// test of the run and the server sessions some of them start.
///
/// `work` may capture non-Sendable state (models, encoders): the caller is suspended until it ends, so nothing else
/// touches that state meanwhile.
///
/// The thread lets go of `work` before it resumes the caller: `withoutActuallyEscaping` traps if the closure is still
/// referenced when its block returns, and the detached thread's own closure is released only after the resume.
public func offThePool<T>(_ work: () throws -> T) async throws -> T {
    try await withoutActuallyEscaping(work) { escapable in
        let job = Job(escapable)   // runs while the caller waits: one user at a time
        return try await onThread { UncheckedSendable(try job.run()) }.value
    }
}

/// The closure of `offThePool`, dropped as soon as it has run.
private final class Job<T>: @unchecked Sendable {
    private var work: (() throws -> T)?
    init(_ work: @escaping () throws -> T) { self.work = work }

    func run() throws -> T {
        guard let work else { preconditionFailure("offThePool's job runs once") }
        self.work = nil
        return try work()
    }
}
