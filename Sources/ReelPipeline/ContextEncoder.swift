import ReelCore
import ReelMedia
import ReelModels

/// Makes the latents a video starts from (`VideoContext`): an image as its first frame, or the last frames of
/// a video it continues. Frames come already fitted to the video size (ReelMedia's fitting rules).
///
/// The generator takes context in whole blocks (Self-Forcing's `initial_latent` for a model without an
/// independent first frame, `pipeline/causal_inference.py`, asserts a multiple of the block), and a causal
/// video VAE turns 4T - 3 frames into T latents, so one block of 3 latent frames is 9 video frames.
public enum ContextEncoder {
    /// An image as the video's first frame: a still clip of one block's frames (9 for LongLive's blocks of 3),
    /// encoded; its decoded frames open the output, and the image's latents become the attention sink.
    public static func image(_ image: RGBFrames, encoder: any VideoEncoder, geometry: BlockGeometry,
                             on stream: any Backend, for target: any Backend) throws -> VideoContext {
        try check(image, geometry, "the image")
        guard image.count == 1 else { throw ReelError.input("an image is one frame, got \(image.count)") }
        let frames = geometry.videoFrames(latentFrames: geometry.latentFramesPerBlock)
        let clip = try RGBFrames(width: image.width, height: image.height,
                                 pixels: Array([[UInt8]](repeating: image.pixels, count: frames).joined()))
        return VideoContext(latents: try encode(clip, encoder: encoder, geometry: geometry, on: stream, for: target), shown: true)
    }

    /// An image as a LongLive 2.0 model's first frame (`inference_i2v.yaml`'s `initial_latent` of one frame): the
    /// image alone, encoded to one latent frame `[1, h, w, C]` (a causal VAE's first latent is its first frame).
    public static func firstFrame(_ image: RGBFrames, encoder: any VideoEncoder, geometry: BlockGeometry,
                                  on stream: any Backend, for target: any Backend) throws -> VideoContext {
        try check(image, geometry, "the image")
        guard image.count == 1 else { throw ReelError.input("an image is one frame, got \(image.count)") }
        return VideoContext(latents: try encode(image, encoder: encoder, geometry: geometry, on: stream, for: target), shown: true)
    }

    /// The end of a video to continue: its last frames, as many whole blocks of latents as fit in
    /// `maxLatentFrames` (the frames the generator attends to), at least one block. Its frames are not
    /// shown again: the output is the continuation.
    public static func continuation(_ video: RGBFrames, encoder: any VideoEncoder, geometry: BlockGeometry,
                                    maxLatentFrames: Int, on stream: any Backend, for target: any Backend) throws -> VideoContext {
        try check(video, geometry, "the video")
        let n = geometry.latentFramesPerBlock
        let blockFrames = geometry.videoFrames(latentFrames: n)
        guard video.count >= blockFrames else {
            throw ReelError.input("a video to continue needs at least \(blockFrames) frames (one block), it has \(video.count)")
        }
        var latentFrames = max(n, maxLatentFrames / n * n)
        while geometry.videoFrames(latentFrames: latentFrames) > video.count { latentFrames -= n }
        let count = geometry.videoFrames(latentFrames: latentFrames)
        let tail = try RGBFrames(width: video.width, height: video.height,
                                 pixels: Array(video.pixels[((video.count - count) * video.frameBytes)...]))
        return VideoContext(latents: try encode(tail, encoder: encoder, geometry: geometry, on: stream, for: target), shown: false)
    }

    /// Encodes `frames` (4T - 3 of them) from the start of a stream into `[T, h, w, C]` latents on `target`.
    static func encode(_ frames: RGBFrames, encoder: any VideoEncoder, geometry: BlockGeometry,
                       on stream: any Backend, for target: any Backend) throws -> Tensor {
        encoder.reset()
        defer { encoder.reset() }
        let x = try frames.modelInput(on: stream, dtype: encoder.dtype)
        guard let latents = try encoder.encode(x) else { throw ReelError.input("\(frames.count) frames made no latent frame") }
        let t = latents.shape[1]
        try require(geometry.videoFrames(latentFrames: t) == frames.count, "ContextEncoder",
                    "\(frames.count) frames gave \(t) latent frames (expected 4T - 3 frames)")
        let flat = try latents.reshaped([t, latents.shape[2], latents.shape[3], latents.shape[4]])
        return try flat.handedOver(to: target, ready: try stream.recordEvent())
    }

    private static func check(_ frames: RGBFrames, _ geometry: BlockGeometry, _ what: String) throws {
        guard frames.width == geometry.width, frames.height == geometry.height else {
            throw ReelError.input("\(what) is \(frames.width)x\(frames.height); the video is \(geometry) (fit it first)")
        }
    }
}
