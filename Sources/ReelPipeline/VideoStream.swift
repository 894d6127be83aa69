import Foundation
import ReelCore
import ReelIO
import ReelModels

/// One generated block, decoded (or one latent frame of it: see `VideoStream.Granularity`).
public struct VideoChunk: Sendable {
    public var block: LatentBlock
    /// The block's latent frames this chunk's video frames come from (all of them per block).
    public var latentFrames: Range<Int>
    /// The video frames (nil when the stream has no decoder).
    public var frames: RGBFrames?
    public var decodeSeconds: Double
    /// Whether this is the block's last chunk.
    public var endsBlock: Bool { latentFrames.upperBound == block.latents.shape[0] }
}

/// Generation and decoding as one stream: block b + 1 is generated while block b is decoded
/// (two tasks joined by a one-block buffer), and each block's frames are handed on as soon as they
/// exist. Memory is flat: nothing is kept beyond the generator's window and one block in flight.
///
/// On a GPU the decoder's work goes to a stream of its own (`decodeBackend`), so the device runs it
/// beside the DiT's instead of in turn with it.
public final class VideoStream: @unchecked Sendable {
    public let generator: StreamingGenerator
    public let decoder: (any VideoDecoder)?
    /// Where the decoder's ops are issued: another stream of the DiT's device (`Backend.makeStream()`),
    /// or the DiT's own backend.
    public let decodeBackend: any Backend

    /// - Parameter decodeBackend: a stream for the decoder (e.g. `LoadedModel.decodeStream`); nil
    ///   decodes on the generator's stream. Share one decode stream between videos rather than making
    ///   one per video: each stream keeps its own pool of freed device memory.
    public init(generator: StreamingGenerator, decoder: (any VideoDecoder)?, decodeBackend: (any Backend)? = nil) {
        self.generator = generator
        self.decoder = decoder
        self.decodeBackend = decodeBackend ?? generator.model.backend
    }

    /// How finely decoded frames are handed on.
    public enum Granularity: Sendable {
        /// One chunk per block (9 frames for the first block of 3 latent frames, 12 after).
        case block
        /// One chunk per latent frame (1 frame for the stream's first, 4 after): the first frame
        /// arrives after one latent frame's decode instead of a block's, at no cost in throughput
        /// (the decoders work a latent frame at a time anyway).
        case latentFrame
    }

    /// Runs until `latentFrames` frames are generated (nil: until the consumer stops iterating or
    /// `prompt` returns `.stop`). Before each block, `prompt` is asked what to do at that block's
    /// first latent frame: keep the prompt, switch to another (with KV-recache), or stop.
    public func chunks(latentFrames: Int?, granularity: Granularity = .block,
                       prompt: @escaping @Sendable (Int) throws -> PromptDecision = { _ in .keep })
        -> AsyncThrowingStream<VideoChunk, Error> {
        let generator = self.generator, decoder = self.decoder, decodeBackend = self.decodeBackend
        // A decoder on another device gets each block's latents through the host, downloaded on a
        // stream of their own: on the DiT's stream the download would wait for the next block's work.
        let transfer: (any Backend)? = decodeBackend.name == generator.model.backend.name ? nil
            : try? generator.model.backend.makeStream()
        // Two slots: the block being decoded and the one being generated. The producer takes a slot
        // before generating; the consumer returns it once the block is decoded.
        let slots = Slots(2)
        let stop = StopFlag()
        let latents = AsyncThrowingStream<LatentBlock, Error>(bufferingPolicy: .unbounded) { continuation in
            continuation.onTermination = { _ in stop.set(); slots.signal() }
            // A thread of its own: the DiT's ops block while they run.
            Thread.detachNewThread {
                do {
                    while !stop.isSet {
                        if let limit = latentFrames, generator.currentFrame >= limit { break }
                        switch try prompt(generator.currentFrame) {
                        case .keep: break
                        case let .switchTo(context): generator.switchPrompt(to: context)
                        case .stop: continuation.finish(); return
                        }
                        slots.wait()
                        if stop.isSet { break }
                        continuation.yield(try generator.nextBlock())
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
        }
        // Blocks are decoded when the consumer asks for the next chunk, so a consumer that stops
        // pulling stops the decoder, and the producer (two slots ahead at most) stops with it. When
        // the consumer drops the stream, the state's deinit stops the producer.
        let state = DecodeState(decoder: decoder, latents: latents) { stop.set(); slots.signal() }
        return AsyncThrowingStream(unfolding: {
            guard let (block, range) = try await state.nextPart(granularity) else { return nil }
            let t0 = ContinuousClock.now
            var frames: RGBFrames?
            if let decoder = state.decoder {
                // The generator synchronized its stream before handing the block on, and `block`
                // holds the latents until the frames are downloaded (which waits for the decoder's stream).
                let latents = try block.latents.narrowed(axis: 0, start: range.lowerBound, length: range.count)
                let batch = try VideoStream.handOver(try latents.reshaped([1] + latents.shape.dims), to: decodeBackend, via: transfer)
                frames = try RGBFrames(modelOutput: decoder.decode(batch))
            }
            let d = ContinuousClock.now - t0
            let chunk = VideoChunk(block: block, latentFrames: range, frames: frames,
                                   decodeSeconds: d.seconds)
            if chunk.endsBlock { slots.signal() }
            return chunk
        })
    }
}

extension VideoStream {
    /// `latents` for the decoder's backend: the same memory when it is another stream of the same
    /// device (backends of one device share a name), else a copy through the host (a decoder on a second
    /// GPU: a block's latents are ~0.6 MB at 480x832).
    /// `transfer`: a stream of the latents' device to download them on (the generator synchronized
    /// its stream before handing the block on).
    static func handOver(_ latents: Tensor, to backend: any Backend, via transfer: (any Backend)? = nil) throws -> Tensor {
        if latents.backend.name == backend.name { return latents.issued(on: backend) }
        let host = try (transfer.map { latents.issued(on: $0) } ?? latents).toFloats()
        return try backend.tensor(host, shape: latents.shape, dtype: latents.dtype)
    }
}

/// The consumer side of a `VideoStream`: the decoder (used by the one consuming task) and the
/// generated blocks; releasing it stops the producer.
final class DecodeState: @unchecked Sendable {
    let decoder: (any VideoDecoder)?
    private var latents: AsyncThrowingStream<LatentBlock, Error>.AsyncIterator
    private let onRelease: @Sendable () -> Void

    init(decoder: (any VideoDecoder)?, latents: AsyncThrowingStream<LatentBlock, Error>, onRelease: @escaping @Sendable () -> Void) {
        self.decoder = decoder
        self.latents = latents.makeAsyncIterator()
        self.onRelease = onRelease
    }

    /// The block being handed on and the latent frames of it already handed on.
    private var current: (block: LatentBlock, done: Int)?

    /// The next block, or the next latent frame of the current one.
    func nextPart(_ granularity: VideoStream.Granularity) async throws -> (LatentBlock, Range<Int>)? {
        if current == nil {
            guard let block = try await latents.next() else { return nil }
            current = (block, 0)
        }
        let (block, done) = current!
        let total = block.latents.shape[0]
        let end = granularity == .block ? total : done + 1
        current = end == total ? nil : (block, end)
        return (block, done..<end)
    }

    deinit { onRelease() }
}

/// A counting gate for threads (a DispatchSemaphore traps when it is freed with fewer permits
/// than it started with, which is what a consumer that stops early leaves behind).
final class Slots: @unchecked Sendable {
    private let condition = NSCondition()
    private var free: Int
    init(_ count: Int) { free = count }
    func wait() {
        condition.lock()
        while free == 0 { condition.wait() }
        free -= 1
        condition.unlock()
    }
    func signal() {
        condition.lock()
        free += 1
        condition.signal()
        condition.unlock()
    }
}

/// A flag set once, read from any thread.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// What to do at a block boundary.
public enum PromptDecision: @unchecked Sendable {
    case keep
    case switchTo(WanDiT.PromptContext)
    case stop
}
