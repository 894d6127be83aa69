import Foundation
import ReelCore
import ReelMedia
import ReelModels

/// Decodes latent blocks as they arrive and hands each block's frames to a sink before taking the
/// next one: the consumer half of streaming output. Run it on the generator's `blocks()` sequence,
/// whose producer task computes the next block while this one is decoded.
public enum BlockDecodingLoop {
    /// What one block cost, reported after its frames reached the sink.
    public struct BlockReport: Sendable {
        /// Block number, from 0.
        public var index: Int
        public var latentFrames: Int
        /// Frames written for this block (1 + 4(T - 1) for the first, 4T after).
        public var frames: Int
        public var decodeSeconds: Double
        public var writeSeconds: Double
    }

    /// Decodes every block of `blocks` (`[T, h, w, C]` or `[1, T, h, w, C]` latents) with `decoder`
    /// and writes the frames to `sink`; finishes the sink at the end. Returns the frames written.
    @discardableResult
    public static func run<S: AsyncSequence>(_ blocks: S, decoder: any VideoDecoder, sink: any FrameSink,
                                             onBlock: (BlockReport) -> Void = { _ in }) async throws -> Int
    where S.Element == Tensor {
        var index = 0, total = 0
        for try await latents in blocks {
            let t0 = ContinuousClock.now
            let x = latents.rank == 4 ? try latents.reshaped([1] + latents.shape.dims) : latents   // [1, T, h, w, C]
            let video = try decoder.decode(x)                                                        // [1, T', H, W, 3]
            let frames = try RGBFrames(modelOutput: video)
            let t1 = ContinuousClock.now
            try sink.write(frames)
            let t2 = ContinuousClock.now
            total += frames.count
            onBlock(BlockReport(index: index, latentFrames: x.shape[1], frames: frames.count,
                                decodeSeconds: (t1 - t0).seconds, writeSeconds: (t2 - t1).seconds))
            index += 1
        }
        try sink.finish()
        return total
    }
}
