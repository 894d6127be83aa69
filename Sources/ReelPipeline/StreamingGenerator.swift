import Foundation
import ReelCore
import ReelModels

/// One block of generated latent frames.
public struct LatentBlock: @unchecked Sendable {
    /// Block number, from 0.
    public var index: Int
    /// Absolute index of the block's first latent frame.
    public var startFrame: Int
    /// Clean latents `[framesPerBlock, H, W, C]` (the last step's x0), on the generator's stream.
    public var latents: Tensor
    /// Index of the prompt that conditioned this block (0 for the first, +1 per switch).
    public var promptIndex: Int
    /// The prompt text this block switched to, when a live switch started here (the pipeline's control).
    public var switchedTo: String?
    /// Reached on the generator's stream once `latents` are written: another stream waits for it
    /// (`Tensor.handedOver(to:ready:)`), the host only where it must (`resolvingTimings()`).
    public var ready: any BackendEvent
    /// The block's costs; `seconds` is NaN until `resolvingTimings()`.
    public var timings: BlockTimings
    /// Whether the block was made or given (`StreamingGenerator.issueContextBlock`).
    public var role: BlockRole = .generated
    /// Timed events of the block's start and of its recache (start, end), for `resolvingTimings()`.
    var marks: (start: any BackendEvent, recache: (any BackendEvent, any BackendEvent)?)?

    /// The block with its timings measured between its events: waits until the block has run.
    public func resolvingTimings() throws -> LatentBlock {
        guard let marks else { return self }
        var b = self
        b.timings.seconds = try ready.seconds(since: marks.start)
        if let (start, end) = marks.recache { b.timings.recacheSeconds = try end.seconds(since: start) }
        b.marks = nil
        return b
    }
}

/// Where a block's latents come from.
public enum BlockRole: Sendable, Equatable {
    /// Denoised by the generator.
    case generated
    /// Given as context (an image or the end of a video, encoded): written into the cache as clean frames.
    /// `shown`: whether its decoded frames belong to the output (an image's still clip does; the frames a
    /// continued video already has do not, though they are decoded to prime the decoder's causal state).
    case context(shown: Bool)
}

/// The cost of one block, measured on its stream between timed events (device time on a GPU: from the
/// stream reaching the block's first op to its last, whatever the host was doing meanwhile).
public struct BlockTimings: Sendable {
    /// Seconds for the whole block, recache included.
    public var seconds: Double
    /// Seconds of KV-recache after a prompt switch at this block's start (0 when none).
    public var recacheSeconds: Double
    /// DiT forward passes run (steps, the previous block's clean pass, recache).
    public var forwards: Int
}

/// LongLive's streaming generation loop (`pipeline/interactive_causal_inference.py`): per block of
/// frames, a few denoising steps over the KV cache, then one clean pass that refreshes the cache;
/// a prompt switch re-caches the window with the new prompt before the next block. No length limit:
/// the cache is a fixed ring, positions are unbounded, and only the window's latents are kept.
public final class StreamingGenerator: @unchecked Sendable {
    public let model: WanDiT
    public let schedule: StreamingSchedule
    public let flow: FlowMatchSchedule
    public let latentShape: (h: Int, w: Int, c: Int)
    let cache: WanKVCache
    let noise: any NoiseSource
    private var prompt: WanDiT.PromptContext
    private var promptIndex = 0
    private var nextFrame = 0
    private var blockIndex = 0
    /// Clean latents of the newest frames (at most `schedule.attentionFrames`), oldest first, each `[1, H, W, C]`.
    private var recent: [Tensor] = []
    /// Re-cache the window with the new prompt on a switch (LongLive's behaviour). Turning it off
    /// reproduces plain prompt switching, which LongLive shows to keep the old prompt's content.
    public var recacheOnSwitch = true
    private let lock = NSLock()
    private var pending: WanDiT.PromptContext?
    /// The last block's clean latents and first frame, whose clean pass has not run yet: it runs at
    /// the start of the next block, so a block's latents are handed on (to a decoder on another
    /// stream) one forward pass earlier. A recache rewrites every key that pass would write, so at a
    /// switch with recache it is skipped.
    private var pendingClean: (latents: Tensor, startFrame: Int)?
    /// Latent frames given as context before the first generated block (`issueContextBlock`). The noise
    /// of generated frames is drawn as if they started at frame 0, as Self-Forcing indexes its noise
    /// without the input frames (`pipeline/causal_inference.py`: `noise[:, start - num_input_frames ...]`).
    public private(set) var contextFrames = 0

    /// - Parameters:
    ///   - latentHeight, latentWidth: latent size (video size / 8), multiples of the patch.
    public init(model: WanDiT, prompt: WanDiT.PromptContext, latentHeight: Int, latentWidth: Int,
                schedule: StreamingSchedule = .longLive, noise: any NoiseSource,
                cacheDType: DType? = nil) throws {
        try schedule.validate()
        let c = model.config
        try c.checkLatentSize(height: latentHeight, width: latentWidth)
        self.model = model
        self.schedule = schedule
        self.flow = try FlowMatchSchedule(steps: schedule.denoisingSteps, warp: schedule.warpDenoisingSteps, shift: schedule.shift)
        self.latentShape = (latentHeight, latentWidth, c.inChannels)
        self.noise = noise
        self.prompt = prompt
        let tokensPerFrame = (latentHeight / c.patch) * (latentWidth / c.patch)
        self.cache = try model.makeCache(tokensPerFrame: tokensPerFrame, sinkFrames: schedule.sinkFrames,
                                         windowFrames: schedule.windowFrames, dtype: cacheDType)
    }

    /// Bytes of the self-attention cache (fixed for the generator's life).
    public var cacheBytes: Int { cache.byteCount }
    /// The KV cache's traffic when it lives in host memory (`WanKVCache.hostTraffic`).
    public var cacheHostTraffic: (uploaded: Int, writtenBack: Int)? { cache.hostTraffic }

    /// Clean latent frames kept for a recache (at most `schedule.attentionFrames`).
    public var retainedLatentFrames: Int { recent.count }

    /// Index of the next block's first latent frame.
    public var currentFrame: Int { nextFrame }

    /// Changes the prompt from the next block on (with KV-recache). Safe to call from any thread.
    public func switchPrompt(to newPrompt: WanDiT.PromptContext) {
        lock.lock(); pending = newPrompt; lock.unlock()
    }

    /// Generates the next block and waits for it (its timings resolved).
    public func nextBlock() throws -> LatentBlock { try issueBlock().resolvingTimings() }

    /// Issues the next block's work on the model's stream and returns without waiting for it: the block's
    /// `ready` event marks its latents written, and `resolvingTimings()` gives its costs once it has run.
    public func issueBlock() throws -> LatentBlock {
        let be = model.backend
        let started = try be.recordTimedEvent()
        let start = nextFrame, count = schedule.framesPerBlock
        var forwards = 0
        var recacheMarks: (any BackendEvent, any BackendEvent)?

        lock.lock(); let switchTo = pending; pending = nil; lock.unlock()
        if let switchTo {
            let t0 = try be.recordTimedEvent()
            if recacheOnSwitch {
                // The recache covers the window, which holds the last block: its clean pass would only
                // write keys that the recache overwrites before anything reads them.
                pendingClean = nil
            } else {
                forwards += try runPendingCleanPass()   // with the prompt that made that block
            }
            prompt = switchTo
            promptIndex += 1
            if recacheOnSwitch { forwards += try recache(at: start) }
            recacheMarks = (t0, try be.recordTimedEvent())
        } else {
            forwards += try runPendingCleanPass()
        }

        let noiseFrame = start - contextFrames
        var x = try noise.initial(startFrame: noiseFrame, count: count, shape: latentShape, on: be)
        var x0 = x
        for (i, t) in flow.timesteps.enumerated() {
            guard let v = try model.forward(x, timestep: t, prompt: prompt, cache: cache,
                                            access: .init(startFrame: start)) else { break }
            forwards += 1
            // x0 = x_t - sigma_t * v (reference: float64 then cast).
            x0 = try be.axpby(1, try be.cast(x, to: v.dtype), -flow.sigmas[i], v)
            if i + 1 < flow.timesteps.count {
                let fresh = try noise.renoise(startFrame: noiseFrame, step: i, count: count, shape: latentShape, on: be)
                let s = flow.sigmas[i + 1]
                x = try be.axpby(1 - s, x0, s, try be.cast(fresh, to: x0.dtype))
            }
        }
        // The clean pass (the block's keys refreshed from its denoised latents) runs when the next
        // block starts; the latents are final now.
        pendingClean = (x0, start)
        try remember(x0)

        var block = LatentBlock(index: blockIndex, startFrame: start, latents: x0, promptIndex: promptIndex,
                                ready: try be.recordTimedEvent(),
                                timings: BlockTimings(seconds: .nan, recacheSeconds: 0, forwards: forwards))
        block.marks = (started, recacheMarks)
        nextFrame += count
        blockIndex += 1
        return block
    }

    /// Writes clean latents `[framesPerBlock, H, W, C]` (an encoded image or video, normalized as the DiT's
    /// latents are) into the cache as the next block, before any block is generated: one forward at timestep 0
    /// writes their keys (Self-Forcing's `initial_latent` path, `pipeline/causal_inference.py`, which runs
    /// each input block through the generator at timestep 0 and copies it to the output). The first context
    /// block becomes the attention sink; the frames are kept for a recache like generated ones.
    public func issueContextBlock(_ latents: Tensor, shown: Bool) throws -> LatentBlock {
        let be = model.backend
        let count = schedule.framesPerBlock
        guard nextFrame == contextFrames else {
            throw ReelError.input("context frames come before the first generated block (frame \(nextFrame) is generated)")
        }
        let expected = Shape([count, latentShape.h, latentShape.w, latentShape.c])
        guard latents.shape == expected else {
            throw ReelError.input("a context block is \(expected) latents (one block at this size), got \(latents.shape)")
        }
        let started = try be.recordTimedEvent()
        let start = nextFrame
        let x0 = latents.dtype == model.dtype ? latents : try be.cast(latents, to: model.dtype)
        lock.lock(); let switchTo = pending; pending = nil; lock.unlock()
        if let switchTo { prompt = switchTo; promptIndex += 1 }   // nothing cached yet: no recache
        _ = try model.forward(x0, timestep: 0, prompt: prompt, cache: cache, access: .init(startFrame: start, needsOutput: false))
        try remember(x0)
        var block = LatentBlock(index: blockIndex, startFrame: start, latents: x0, promptIndex: promptIndex,
                                ready: try be.recordTimedEvent(), timings: BlockTimings(seconds: .nan, recacheSeconds: 0, forwards: 1))
        block.role = .context(shown: shown)
        block.marks = (started, nil)
        nextFrame += count
        contextFrames += count
        blockIndex += 1
        return block
    }

    /// Blocks as an async sequence, each generated when the consumer asks for it (no block is ever
    /// dropped or computed ahead; `Pipeline` overlaps generation with decoding). `limit` nil runs
    /// until the consumer stops iterating.
    public func blocks(limit: Int? = nil) -> AsyncThrowingStream<LatentBlock, Error> {
        let remaining = Countdown(limit)
        return AsyncThrowingStream(unfolding: { [self] in
            guard !Task.isCancelled, remaining.take() else { return nil }
            return try nextBlock()
        })
    }

    /// KV-recache at block start `s` with the new prompt (LongLive `_recache_after_switch`, global sink):
    /// one clean pass over the newest min(attentionFrames, s) latents at their original positions.
    /// When the recached span does not reach frame 0, the frames that would land in the sink are
    /// dropped from the pass: LongLive computes them but discards their keys, and no other frame sees
    /// them, so the result is identical. Returns the forward passes run.
    private func recache(at s: Int) throws -> Int {
        let n = min(schedule.attentionFrames, s)
        guard n > 0 else { return 0 }
        let first = s - n == 0 ? 0 : s - schedule.windowFrames
        let frames = Array(recent.suffix(s - first))
        let latents = try model.backend.concat(frames, axis: 0)          // [s - first, H, W, C]
        _ = try model.forward(latents, timestep: schedule.contextNoise, prompt: prompt, cache: cache,
                              access: .init(startFrame: first, needsOutput: false))
        return 1
    }

    /// LongLive's clean pass for the last block, if it has not run: one forward over its denoised
    /// latents at `contextNoise` that writes their keys; its output is unused. Returns the passes run.
    private func runPendingCleanPass() throws -> Int {
        guard let (x0, start) = pendingClean else { return 0 }
        pendingClean = nil
        _ = try model.forward(x0, timestep: schedule.contextNoise, prompt: prompt, cache: cache,
                              access: .init(startFrame: start, needsOutput: false))
        return 1
    }

    private func remember(_ x0: Tensor) throws {
        for f in 0..<x0.shape[0] {
            recent.append(try model.backend.slice(x0, axis: 0, start: f, length: 1))
        }
        if recent.count > schedule.attentionFrames { recent.removeFirst(recent.count - schedule.attentionFrames) }
    }
}

/// How many more items a stream may produce (nil: no limit).
final class Countdown: @unchecked Sendable {
    private let lock = NSLock()
    private var left: Int?
    init(_ count: Int?) { left = count }
    func take() -> Bool {
        lock.withLock {
            guard let l = left else { return true }
            guard l > 0 else { return false }
            left = l - 1
            return true
        }
    }
}

extension LatentBlock {
    /// A block made outside a generator (`reel serve --test-pattern`): its timings as given, no events to resolve.
    public init(index: Int, startFrame: Int, latents: Tensor, promptIndex: Int, ready: any BackendEvent, seconds: Double) {
        self.init(index: index, startFrame: startFrame, latents: latents, promptIndex: promptIndex, ready: ready,
                  timings: BlockTimings(seconds: seconds, recacheSeconds: 0, forwards: 0))
    }
}
