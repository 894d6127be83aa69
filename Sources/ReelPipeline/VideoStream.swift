import Foundation
import ReelCore
import ReelIO
import ReelModels

/// One generated block, decoded.
public struct VideoChunk: Sendable {
    public var block: LatentBlock
    /// The block's video frames (nil when the stream has no decoder).
    public var frames: RGBFrames?
    public var decodeSeconds: Double
}

/// Generation and decoding as one stream: block b + 1 is generated while block b is decoded
/// (two tasks joined by a one-block buffer), and each block's frames are handed on as soon as they
/// exist. Memory is flat: nothing is kept beyond the generator's window and one block in flight.
public final class VideoStream: @unchecked Sendable {
    public let generator: StreamingGenerator
    public let decoder: (any VideoDecoder)?

    public init(generator: StreamingGenerator, decoder: (any VideoDecoder)?) {
        self.generator = generator
        self.decoder = decoder
    }

    /// Runs until `latentFrames` frames are generated (nil: until the consumer stops iterating or
    /// `prompt` returns `.stop`). Before each block, `prompt` is asked what to do at that block's
    /// first latent frame: keep the prompt, switch to another (with KV-recache), or stop.
    public func chunks(latentFrames: Int?, prompt: @escaping @Sendable (Int) throws -> PromptDecision = { _ in .keep })
        -> AsyncThrowingStream<VideoChunk, Error> {
        let generator = self.generator, decoder = self.decoder
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
            guard let block = try await state.nextBlock() else { return nil }
            let t0 = ContinuousClock.now
            var frames: RGBFrames?
            if let decoder = state.decoder {
                let video = try decoder.decode(try block.latents.reshaped([1] + block.latents.shape.dims))
                frames = try RGBFrames(modelOutput: video)
            }
            let d = ContinuousClock.now - t0
            slots.signal()
            return VideoChunk(block: block, frames: frames,
                              decodeSeconds: Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
        })
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

    func nextBlock() async throws -> LatentBlock? { try await latents.next() }

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
