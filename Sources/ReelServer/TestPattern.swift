import Foundation
import ReelCore
import ReelMedia
import ReelPipeline

/// `reel serve --test-pattern`: every session shows a moving pattern made in real time at its size and frame rate
/// instead of the model's video, so that the studio's transport (JPEG or H.264, bandwidth, glass-to-glass latency)
/// can be measured and a deployment checked at rates the model cannot make on the machine at hand.
///
/// The pattern: a gradient scrolling 2 pixels a frame (every pixel changes every frame, as in generated video) and a
/// disc circling once every 3 seconds. It comes as the model's video does, a latent frame at a time (1 frame, then
/// 4) in the model's blocks (3 latent frames for LongLive 1.0, 8 for 2.0), each part when its last frame is due in
/// real time; prompts, pause and seeds are ignored.
enum TestPattern {
    /// The parts of a video of `latentFrames` latent frames (nil: until stopped) of `width` x `height` at `fps`, in
    /// blocks of `blockFrames` latent frames.
    static func chunks(width: Int, height: Int, fps: Int, latentFrames: Int?, blockFrames: Int = 3, backend: any Backend,
                       isStopped: @escaping @Sendable () -> Bool) -> AsyncThrowingStream<VideoChunk, Error> {
        let (stream, continuation) = AsyncThrowingStream<VideoChunk, Error>.makeStream()
        let cancelled = Flag()
        continuation.onTermination = { _ in cancelled.set() }
        let backend = UncheckedSendable(backend)
        Thread.detachNewThread {
            do {
                let painter = Painter(width: width, height: height, fps: fps)
                let n = max(1, blockFrames)
                let latents = try backend.value.zeros(Shape([n, 1, 1, 1]))   // [latent frames of a block, h, w, C]: unread
                let start = ContinuousClock.now
                var frame = 0, latent = 0
                while latentFrames.map({ latent < $0 }) ?? true, !isStopped(), !cancelled.isSet {
                    let count = latent == 0 ? 1 : 4   // T latent frames decode to 4T - 3 frames
                    let due = start + .seconds(Double(frame + count - 1) / Double(fps))
                    let wait = due - .now
                    if wait > .zero { Thread.sleep(forTimeInterval: wait.seconds) }
                    let pixels = (frame..<(frame + count)).flatMap(painter.frame)
                    let block = LatentBlock(index: latent / n, startFrame: latent / n * n, latents: latents, promptIndex: 0,
                                            ready: try backend.value.recordEvent(), seconds: 0)
                    let part = latent % n
                    continuation.yield(VideoChunk(block: block, latentFrames: part..<(part + 1),
                                                  frames: try RGBFrames(width: width, height: height, pixels: pixels),
                                                  decodeSeconds: 0))
                    frame += count
                    latent += 1
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        return stream
    }

    /// Draws frame n: a precomputed gradient 512 pixels wider than the frame, shifted, and the disc on it.
    struct Painter {
        let width: Int, height: Int, fps: Int
        private let background: [UInt8]   // [height, width + 512, 3]

        init(width: Int, height: Int, fps: Int) {
            self.width = width; self.height = height; self.fps = fps
            let wide = width + 512
            var bg = [UInt8](repeating: 0, count: wide * height * 3)
            for y in 0..<height {
                for x in 0..<wide {
                    let t = x % 512, p = (y * wide + x) * 3
                    bg[p] = UInt8(t < 256 ? t : 511 - t)
                    bg[p + 1] = UInt8(30 + y * 180 / height)
                    bg[p + 2] = UInt8(90 + t / 8)
                }
            }
            background = bg
        }

        func frame(_ n: Int) -> [UInt8] {
            let wide = width + 512, shift = (2 * n) % 512
            var out = [UInt8](repeating: 0, count: width * height * 3)
            out.withUnsafeMutableBufferPointer { dst in
                background.withUnsafeBufferPointer { src in
                    for y in 0..<height {
                        let from = src.baseAddress! + (y * wide + shift) * 3
                        (dst.baseAddress! + y * width * 3).update(from: from, count: width * 3)
                    }
                }
                let angle = 2 * Double.pi * Double(n) / Double(3 * fps)
                let cx = Double(width) / 2 + Double(width) / 3 * cos(angle), cy = Double(height) / 2 + Double(height) / 3 * sin(angle)
                let r = Double(height) / 8
                for y in max(0, Int(cy - r))..<min(height, Int(cy + r) + 1) {
                    for x in max(0, Int(cx - r))..<min(width, Int(cx + r) + 1) {
                        let dx = Double(x) - cx, dy = Double(y) - cy
                        guard dx * dx + dy * dy <= r * r else { continue }
                        let p = (y * width + x) * 3
                        dst[p] = 230; dst[p + 1] = 60; dst[p + 2] = 50
                    }
                }
            }
            return out
        }
    }

    /// Set once, read from any thread.
    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        var isSet: Bool { lock.withLock { value } }
        func set() { lock.withLock { value = true } }
    }
}
