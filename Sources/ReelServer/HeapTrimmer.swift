import Foundation
import ReelCore

/// Gives the C heap's free pages back to the system after a session ends (`HeapStatistics.trim()`, glibc's
/// `malloc_trim(0)`), on a thread of its own; requests that come while a trim runs make one more, not one each.
///
/// Why: a session's tensors (KV cache, decoder state, frames) are allocated by its stages' short-lived threads,
/// each served by one of glibc's per-thread arenas (up to 8 per core), and glibc hands back only the top of an
/// arena's heap: the pages of chunks freed below a live one stay resident. Over a soak the arenas' free bytes
/// grew while the bytes in use did not (docs/deploy.md, "Soak").
final class HeapTrimmer: @unchecked Sendable {
    private let lock = NSLock()
    // Guarded by `lock`.
    private var running = false
    private var pending = false
    private var _trims = 0

    /// Trims done so far.
    var trims: Int { lock.withLock { _trims } }

    /// Asks for a trim; returns at once.
    func request() {
        let start = lock.withLock { () -> Bool in
            if running { pending = true; return false }
            running = true
            return true
        }
        guard start else { return }
        Thread.detachNewThread { [self] in
            repeat {
                HeapStatistics.trim()
            } while lock.withLock { () -> Bool in
                _trims += 1
                if pending { pending = false; return true }
                running = false
                return false
            }
        }
    }
}
