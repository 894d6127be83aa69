import ReelCore

/// What one causal layer of a Wan VAE remembers between chunks of a stream.
enum CausalSlot {
    /// Nothing seen yet: the layer pads with zeros in front.
    case empty
    /// Decoder `upsample3d` after the first chunk (Wan's 'Rep' marker): the first chunk skipped
    /// the time conv; the next one runs it with zero padding, not with chunk 0's features.
    case rep
    /// The last input frames (at most 2 = Wan's CACHE_T) the next chunk continues from, as runs
    /// of frames along axis 1, oldest first (the tensors they came in, where that keeps no more
    /// memory alive: a copy would cost a pass over them on every chunk).
    case frames([Tensor])
    /// The last 2 input frames side by side in one `[N, 2, H, W, C]` tensor (layers that get one
    /// frame at a time, `CausalConv3d.pairTaps`): each new frame is written over the older one,
    /// in slot `next`.
    case pair(Tensor, next: Int)
}

extension Backend {
    /// The last `count` frames of `runs` (tensors `[N, t_i, ...]`, oldest first) as runs of the same
    /// kind: a run taken whole is kept as it is unless it views a larger storage; frames taken from
    /// part of a run are copied, so the result never holds more memory alive than its frames.
    func lastFrames(_ runs: [Tensor], count: Int) throws -> [Tensor] {
        var need = count, kept: [Tensor] = []
        for run in runs.reversed() where need > 0 {
            let t = run.shape[1], take = min(need, t)
            if take == t && run.byteOffset == 0 && run.storage.byteCount <= run.byteCount + 4096 {
                kept.append(run)
            } else {
                kept.append(try slice(run, axis: 1, start: t - take, length: take))
            }
            need -= take
        }
        return kept.reversed()
    }

    /// The runs of frames joined along axis 1 (no copy for a single run).
    func joinFrames(_ runs: [Tensor]) throws -> Tensor {
        runs.count == 1 ? runs[0] : try concat(runs, axis: 1)
    }
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
