import ReelCore
import ReelModels

/// What the pipeline's Generator stage drives: LongLive 1.0's `StreamingGenerator` or LongLive 2.0's
/// `LongLive2BlockGenerator`, chosen by the model (`WanDiTConfig.runsLongLive2`).
public protocol BlockGenerator: AnyObject, Sendable {
    var model: WanDiT { get }
    /// Latent frames a block holds.
    var framesPerBlock: Int { get }
    /// Index of the next block's first latent frame.
    var currentFrame: Int { get }
    /// Latent frames given as context before the first generated block.
    var contextFrames: Int { get }
    /// Bytes of the self-attention cache.
    var cacheBytes: Int { get }
    /// The cache's bytes so far up to the device and back, when it lives in host memory (`WanKVCache.hostTraffic`).
    var cacheHostTraffic: (uploaded: Int, writtenBack: Int)? { get }
    /// Changes the prompt from the next block on. Safe to call from any thread.
    func switchPrompt(to newPrompt: WanDiT.PromptContext)
    /// Issues the next block's work on the model's stream and returns without waiting for it.
    func issueBlock() throws -> LatentBlock
    /// Writes clean latents of one block into the cache as context, before any block is generated.
    func issueContextBlock(_ latents: Tensor, shown: Bool) throws -> LatentBlock
}

extension StreamingGenerator: BlockGenerator {
    public var framesPerBlock: Int { schedule.framesPerBlock }
}

extension WanDiTConfig {
    /// Whether the pipeline runs LongLive 2.0's schedule for this DiT: a Wan2.2-TI2V-5B-shaped model, whose 48
    /// latent channels are the Wan2.2 VAE's (Wan2.1's DiTs, LongLive 1.0's, take 16).
    public var runsLongLive2: Bool { inChannels == WanVAEConfig.wan22.zDim }
}
