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
        // The thread lets go of the closure before it hands the result over: a thread object that still held it when
        // the caller resumed made withoutActuallyEscaping trap ("non-escaping closure has escaped"), now and then.
        let job = Job(escapable)
        return try await onThread { UncheckedSendable(try job.run()) }.value
    }
}

/// The work of one `offThePool` call, dropped as soon as it has run.
private final class Job<T>: @unchecked Sendable {
    private var work: (() throws -> T)?
    init(_ work: @escaping () throws -> T) { self.work = work }

    func run() throws -> T {
        let w = work!
        work = nil
        return try w()
    }
}
