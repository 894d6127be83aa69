import ReelCore
import ReelModels

/// The block / latent frame / video frame arithmetic of a stream, in one place.
///
/// The causal video VAEs Reel decodes with (Wan2.1's and TAEHV) compress 8x in space and 4x in time
/// with a causal first frame: latent frame 0 decodes to 1 video frame and every later one to 4, so T latent
/// frames give 4T - 3 frames (Wan2.1 `vae.py`, taehv `taehv.py`). The generator makes latent frames in blocks
/// (LongLive: 3), so block 0 gives 9 frames and every later block 12.
public struct BlockGeometry: Sendable, Equatable, CustomStringConvertible {
    /// Video size in pixels.
    public var width: Int
    public var height: Int
    /// Latent frames per block (`StreamingSchedule.framesPerBlock`).
    public var latentFramesPerBlock: Int
    /// Video pixels per latent cell along H and W.
    public var spatialStride: Int
    /// Video frames per latent frame after the first.
    public var temporalStride: Int

    public init(width: Int, height: Int, latentFramesPerBlock: Int = StreamingSchedule.longLive.framesPerBlock,
                spatialStride: Int = 8, temporalStride: Int = 4) {
        self.width = width; self.height = height
        self.latentFramesPerBlock = latentFramesPerBlock
        self.spatialStride = spatialStride; self.temporalStride = temporalStride
    }

    /// The geometry of a latent grid given directly (fixtures, warm-ups): cells of `spatialStride` pixels.
    public init(latentWidth: Int, latentHeight: Int, latentFramesPerBlock: Int = StreamingSchedule.longLive.framesPerBlock,
                spatialStride: Int = 8, temporalStride: Int = 4) {
        self.init(width: latentWidth * spatialStride, height: latentHeight * spatialStride, latentFramesPerBlock: latentFramesPerBlock,
                  spatialStride: spatialStride, temporalStride: temporalStride)
    }

    /// A video size as people type it, `WIDTHxHEIGHT` (e.g. `832x480`): positive multiples of 16 (the
    /// latent grid of 8-pixel cells must split into the DiT's 2x2 patches).
    public init(size text: String, latentFramesPerBlock: Int = StreamingSchedule.longLive.framesPerBlock) throws {
        let parts = text.lowercased().split(separator: "x").compactMap { Int($0) }
        guard parts.count == 2, parts[0] > 0, parts[1] > 0, parts[0] % 16 == 0, parts[1] % 16 == 0 else {
            throw ReelError.input("the size must be WIDTHxHEIGHT with positive multiples of 16 (e.g. 832x480), got '\(text)'")
        }
        self.init(width: parts[0], height: parts[1], latentFramesPerBlock: latentFramesPerBlock)
    }

    public var description: String { "\(width)x\(height)" }

    /// Latent grid size.
    public var latentHeight: Int { height / spatialStride }
    public var latentWidth: Int { width / spatialStride }

    /// Video frames that `latentFrames` latent frames decode to: 4T - 3 (0 for none).
    public func videoFrames(latentFrames t: Int) -> Int { t <= 0 ? 0 : temporalStride * t - (temporalStride - 1) }

    /// Video frames latent frame `index` of the stream decodes to: 1 for the first, 4 after.
    public func videoFrames(ofLatentFrame index: Int) -> Int { index == 0 ? 1 : temporalStride }

    /// Video frames of block `index`: 9, then 12 (LongLive's blocks of 3).
    public func videoFrames(ofBlock index: Int) -> Int {
        videoFrames(latentFrames: (index + 1) * latentFramesPerBlock) - videoFrames(latentFrames: index * latentFramesPerBlock)
    }

    /// The first video frame of block `index`.
    public func firstVideoFrame(ofBlock index: Int) -> Int { videoFrames(latentFrames: index * latentFramesPerBlock) }

    /// Latent frames for `seconds` of video at `fps`: enough for every frame, in whole blocks (at least one).
    public func latentFrames(seconds: Double, fps: Int) -> Int {
        let frames = Int((seconds * Double(fps)).rounded(.up))
        let t = (frames + temporalStride - 1 + temporalStride - 1) / temporalStride
        let n = latentFramesPerBlock
        return max(n, (t + n - 1) / n * n)
    }
}

extension BlockGeometry {
    /// The geometry of this video size for the model whose DiT is `config`: LongLive 2.0's blocks of 8 latent
    /// frames of 16 pixels (the Wan2.2 VAE's stride; sizes in multiples of 32 so the latents split into 2x2
    /// patches) for a 2.0 model, this geometry (LongLive 1.0's blocks of 3 latent frames of 8 pixels) otherwise.
    public func matching(_ config: WanDiTConfig, longLive2: LongLive2Schedule = .longLive2) throws -> BlockGeometry {
        guard config.runsLongLive2 else { return self }
        let stride = 16 * config.patch
        guard width % stride == 0, height % stride == 0 else {
            throw ReelError.input("a LongLive 2.0 model (Wan2.2 VAE, 16-pixel latents in \(config.patch)x\(config.patch) "
                                  + "patches) needs a size in multiples of \(stride), got \(self) (e.g. 1280x704)")
        }
        return BlockGeometry(width: width, height: height, latentFramesPerBlock: longLive2.framesPerBlock,
                             spatialStride: 16, temporalStride: 4)
    }
}

extension WanDiTConfig {
    /// Throws unless a latent grid of `height` x `width` cells splits into the DiT's patches.
    func checkLatentSize(height: Int, width: Int) throws {
        guard height > 0, width > 0, height % patch == 0, width % patch == 0 else {
            throw ReelError.input("latent size \(height)x\(width) must be positive multiples of \(patch)")
        }
    }
}
