import Foundation
import ReelCore
import ReelModels

/// `LongLive2Generator` behind the pipeline: the prompt in force, switches that arrive from any thread, and each
/// block handed on as a `LatentBlock` with its events. A switch only changes the cross-attention from its block on
/// (2.0 has no KV-recache); a context marked `startsShot` (a prompt that starts with "The scene transitions. ")
/// makes that block a scene cut. A block's latents are handed on after its denoising steps: its clean pass runs
/// at the next block's start (`LongLive2Generator.defersCleanPass`, as 1.0's generator does), so the decoder starts
/// a pass earlier and the block's DiT time counts the previous block's clean pass and its own steps.
public final class LongLive2BlockGenerator: BlockGenerator, @unchecked Sendable {
    public let generator: LongLive2Generator
    public var model: WanDiT { generator.model }
    public var framesPerBlock: Int { generator.schedule.framesPerBlock }
    public var currentFrame: Int { generator.currentFrame }
    /// 2.0 takes an image as the first generated frame, not as context blocks.
    public var contextFrames: Int { 0 }
    public var cacheBytes: Int { generator.cacheBytes }
    /// LongLive 2.0's cache stays on the device.
    public var cacheHostTraffic: (uploaded: Int, writtenBack: Int)? { nil }
    private var prompt: WanDiT.PromptContext
    private var promptIndex = 0
    private var blockIndex = 0
    private let lock = NSLock()
    private var pending: WanDiT.PromptContext?

    public init(generator: LongLive2Generator, prompt: WanDiT.PromptContext) {
        self.generator = generator
        self.prompt = prompt
    }

    public func switchPrompt(to newPrompt: WanDiT.PromptContext) {
        lock.withLock { pending = newPrompt }
    }

    public func issueBlock() throws -> LatentBlock {
        let be = model.backend
        let started = try be.recordTimedEvent()
        let start = generator.currentFrame
        let switchTo = lock.withLock { () -> WanDiT.PromptContext? in
            defer { pending = nil }
            return pending
        }
        if let switchTo {
            prompt = switchTo
            promptIndex += 1
        }
        let cleanPass = generator.hasPendingCleanPass ? 1 : 0
        let latents = try generator.nextBlock(prompt: prompt, sceneCut: switchTo?.startsShot ?? false)
        var block = LatentBlock(index: blockIndex, startFrame: start, latents: latents, promptIndex: promptIndex,
                                ready: try be.recordTimedEvent(),
                                timings: BlockTimings(seconds: .nan, recacheSeconds: 0,
                                                      forwards: generator.schedule.steps + cleanPass))
        block.marks = (started, nil)
        blockIndex += 1
        return block
    }

    public func issueContextBlock(_ latents: Tensor, shown: Bool) throws -> LatentBlock {
        throw ReelError.input("a LongLive 2.0 model takes no context blocks: an image is its first frame "
                              + "(LongLive2Generator's image), and it continues no video")
    }
}
