import Foundation

/// The threads of a running pipeline's stages. An error leaves the pipeline only after the awaited stages have
/// returned: a caller that acts on the error (a command that exits) must not find a stage still issuing device work.
/// A process that exits while a stage thread calls into the CUDA driver can crash in the driver's teardown: a 14B
/// bench under a memory cap printed the decoder's allocation error and then died with a segmentation fault while its
/// generator stage was still issuing the next block.
final class StageThreads: @unchecked Sendable {
    private let lock = NSLock()
    // Guarded by `lock`.
    private var running = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// Runs `body` on a thread of its own. `awaited: false` for a stage that may block outside Reel for ever (a read
    /// from a live input that stalls) and issues no device work while it does.
    func start(awaited: Bool = true, _ body: @escaping @Sendable () -> Void) {
        guard awaited else { Thread.detachNewThread(body); return }
        lock.withLock { running += 1 }
        Thread.detachNewThread { [self] in
            body()
            let ready = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
                running -= 1
                guard running == 0 else { return [] }
                defer { waiters = [] }
                return waiters
            }
            for waiter in ready { waiter.resume() }
        }
    }

    /// Returns once every awaited stage has returned.
    func ended() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let done = lock.withLock { () -> Bool in
                if running == 0 { return true }
                waiters.append(waiter)
                return false
            }
            if done { waiter.resume() }
        }
    }
}
