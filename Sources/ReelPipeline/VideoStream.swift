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
        let slots = DispatchSemaphore(value: 2)
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
        // The decoder is used by this one consumer task only.
        let parts = UncheckedBox((decoder, latents))
        return AsyncThrowingStream { continuation in
            let task = Task {
                let (decoder, latents) = parts.value
                do {
                    for try await block in latents {
                        let t0 = ContinuousClock.now
                        var frames: RGBFrames?
                        if let decoder {
                            let video = try decoder.decode(try block.latents.reshaped([1] + block.latents.shape.dims))
                            frames = try RGBFrames(modelOutput: video)
                        }
                        let d = ContinuousClock.now - t0
                        slots.signal()
                        continuation.yield(VideoChunk(block: block, frames: frames,
                                                      decodeSeconds: Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18))
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel(); stop.set(); slots.signal() }
        }
    }
}

/// Hands a value to another task whose exclusive use of it the code guarantees.
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
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
