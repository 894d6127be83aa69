/// A value handed between threads whose safety the code guarantees, not the compiler: read-only model
/// weights and prompt contexts, buffers whose workers write disjoint parts, a sink used by one task
/// at a time. Say at the use why it is safe.
public struct UncheckedSendable<T>: @unchecked Sendable {
    public let value: T
    public init(_ value: T) { self.value = value }
}
