import Foundation

/// A bounded FIFO between two stages: the producer's `send` waits while it holds `capacity` items, which
/// is all the backpressure a pipeline has. The producer ends it with `finish(throwing:)`; the consumer
/// gives up with `cancel()`, after which `send` returns false and the producer stops.
///
/// Stages run on threads of their own (their ops block), so `send` and `receive` block the calling
/// thread; the pipeline's consumer, an async task, takes items with `next()`, which suspends instead.
public final class Channel<Element>: @unchecked Sendable {
    public let capacity: Int
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var items: [Element] = []
    private var finished = false
    private var failure: Error?
    private var cancelled = false
    /// Places taken by `reserve()` and not yet filled by `send`.
    private var reserved = 0
    private var waiter: CheckedContinuation<Void, Never>?

    public init(capacity: Int) {
        precondition(capacity >= 1, "a channel holds at least one item")
        self.capacity = capacity
    }

    /// Waits for a free place and holds it for the next `send`: a producer reserves before it makes an item,
    /// so that it never makes one the channel cannot take yet. False when the consumer has cancelled.
    public func reserve() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard waitForPlaceLocked() else { return false }
        reserved += 1
        return true
    }

    /// Waits while the channel is full; false when the consumer has cancelled. Call with the lock held.
    private func waitForPlaceLocked() -> Bool {
        while items.count + reserved >= capacity && !cancelled { condition.wait() }
        return !cancelled
    }

    /// Gives back a place `reserve()` held, unused.
    public func release() {
        condition.lock()
        if reserved > 0 { reserved -= 1 }
        condition.broadcast()
        condition.unlock()
    }

    /// Hands `item` on (into the place `reserve()` held, if any), waiting while the channel is full. False when
    /// the consumer has cancelled.
    @discardableResult
    public func send(_ item: Element) -> Bool {
        condition.lock()
        if reserved > 0 { reserved -= 1 } else { _ = waitForPlaceLocked() }
        guard !cancelled else { condition.unlock(); return false }
        items.append(item)
        let resume = takeWaiter()
        condition.broadcast()
        condition.unlock()
        resume?.resume()
        return true
    }

    /// Ends the channel: the consumer gets the items left, then nil (or `error`).
    public func finish(throwing error: Error? = nil) {
        condition.lock()
        if !finished { finished = true; failure = error }
        let resume = takeWaiter()
        condition.broadcast()
        condition.unlock()
        resume?.resume()
    }

    /// The consumer wants nothing more: pending items are dropped and the producer's `send` returns false.
    public func cancel() {
        condition.lock()
        cancelled = true
        items.removeAll()
        let resume = takeWaiter()
        condition.broadcast()
        condition.unlock()
        resume?.resume()
    }

    /// Whether the consumer has cancelled.
    public var isCancelled: Bool { condition.withLock { cancelled } }

    /// The next item, waiting on this thread while there is none; nil once finished and empty or cancelled.
    public func receive() throws -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !finished && !cancelled { condition.wait() }
        return try takeLocked()
    }

    /// The next item, suspending the task while there is none; nil once finished and empty or cancelled.
    public func next() async throws -> Element? {
        while true {
            if let taken = try poll() { return taken.item }
            await withCheckedContinuation { park($0) }
        }
    }

    /// An item (or the end) when one is there, without waiting.
    private func poll() throws -> (item: Element?, Void)? {
        condition.lock()
        defer { condition.unlock() }
        guard !items.isEmpty || finished || cancelled else { return nil }
        return (try takeLocked(), ())
    }

    /// Parks the one consumer until a send, finish or cancel (at once if one came since `poll`).
    private func park(_ c: CheckedContinuation<Void, Never>) {
        condition.lock()
        if !items.isEmpty || finished || cancelled {
            condition.unlock()
            c.resume()
        } else {
            waiter = c
            condition.unlock()
        }
    }

    /// Call with the lock held.
    private func takeLocked() throws -> Element? {
        if cancelled { return nil }
        if !items.isEmpty {
            let item = items.removeFirst()
            condition.broadcast()
            return item
        }
        if let failure { throw failure }
        return nil
    }

    /// Call with the lock held; resume the result after unlocking.
    private func takeWaiter() -> CheckedContinuation<Void, Never>? {
        defer { waiter = nil }
        return waiter
    }
}
