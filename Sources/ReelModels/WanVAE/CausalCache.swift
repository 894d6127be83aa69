import ReelCore

/// What one causal layer of a Wan VAE remembers between chunks of a stream.
enum CausalSlot {
    /// Nothing seen yet: the layer pads with zeros in front.
    case empty
    /// Decoder `upsample3d` after the first chunk (Wan's 'Rep' marker): the first chunk skipped
    /// the time conv; the next one runs it with zero padding, not with chunk 0's features.
    case rep
    /// The last input frames (at most 2 = Wan's CACHE_T) the next chunk continues from.
    case frames(Tensor)
}

/// The per-stream state of every causal layer of a Wan VAE encoder or decoder, indexed by the
/// slot each layer was given when the model was built. Its size is fixed (2 frames per causal
/// conv), so memory stays flat however long the stream runs.
struct CausalCache {
    var slots: [CausalSlot]

    init(count: Int) { slots = Array(repeating: .empty, count: count) }

    mutating func reset() { slots = Array(repeating: .empty, count: slots.count) }
}

/// Hands out cache slot numbers while a model is built.
struct SlotAllocator {
    private(set) var count = 0
    mutating func next() -> Int {
        defer { count += 1 }
        return count
    }
}
