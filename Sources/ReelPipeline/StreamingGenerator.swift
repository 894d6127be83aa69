import Foundation
import ReelCore
import ReelModels

/// One block of generated latent frames.
public struct LatentBlock: @unchecked Sendable {
    /// Block number, from 0.
    public var index: Int
    /// Absolute index of the block's first latent frame.
    public var startFrame: Int
    /// Clean latents `[framesPerBlock, H, W, C]` (the last step's x0).
    public var latents: Tensor
    /// Index of the prompt that conditioned this block (0 for the first, +1 per switch).
    public var promptIndex: Int
    public var timings: BlockTimings
}

/// Wall-clock cost of one block (the backend is synchronized before the clock stops).
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

    /// - Parameters:
    ///   - latentHeight, latentWidth: latent size (video size / 8), multiples of the patch.
    public init(model: WanDiT, prompt: WanDiT.PromptContext, latentHeight: Int, latentWidth: Int,
                schedule: StreamingSchedule = .longLive, noise: any NoiseSource,
                cacheDType: DType? = nil) throws {
        try schedule.validate()
        let c = model.config
        guard latentHeight > 0, latentWidth > 0, latentHeight % c.patch == 0, latentWidth % c.patch == 0 else {
            throw ReelError.input("latent size \(latentHeight)x\(latentWidth) must be positive multiples of \(c.patch)")
        }
        self.model = model
        self.schedule = schedule
        self.flow = try FlowMatchSchedule(steps: schedule.denoisingSteps, warp: schedule.warpDenoisingSteps, shift: schedule.shift)
        self.latentShape = (latentHeight, latentWidth, c.inChannels)
        self.noise = noise
        self.prompt = prompt
        let tokensPerFrame = (latentHeight / c.patch) * (latentWidth / c.patch)
        self.cache = try WanKVCache(backend: model.backend, layers: c.layers, tokensPerFrame: tokensPerFrame,
                                    heads: c.heads, headDim: c.headDim, sinkFrames: schedule.sinkFrames,
                                    windowFrames: schedule.windowFrames, dtype: cacheDType ?? model.dtype)
    }

    /// Bytes of the self-attention cache (fixed for the generator's life).
    public var cacheBytes: Int { cache.byteCount }

    /// Clean latent frames kept for a recache (at most `schedule.attentionFrames`).
    public var retainedLatentFrames: Int { recent.count }

    /// Index of the next block's first latent frame.
    public var currentFrame: Int { nextFrame }

    /// Changes the prompt from the next block on (with KV-recache). Safe to call from any thread.
    public func switchPrompt(to newPrompt: WanDiT.PromptContext) {
        lock.lock(); pending = newPrompt; lock.unlock()
    }

    /// Generates the next block.
    public func nextBlock() throws -> LatentBlock {
        let clock = ContinuousClock(), started = clock.now
        let be = model.backend
        let start = nextFrame, count = schedule.framesPerBlock
        var forwards = 0
        var recacheSeconds = 0.0

        lock.lock(); let switchTo = pending; pending = nil; lock.unlock()
        if let switchTo {
            let t0 = clock.now
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
            try be.synchronize()
            recacheSeconds = (clock.now - t0).seconds
        } else {
            forwards += try runPendingCleanPass()
        }

        var x = try noise.initial(startFrame: start, count: count, shape: latentShape, on: be)
        var x0 = x
        for (i, t) in flow.timesteps.enumerated() {
            guard let v = try model.forward(x, timestep: t, prompt: prompt, cache: cache,
                                            access: .init(startFrame: start)) else { break }
            forwards += 1
            // x0 = x_t - sigma_t * v (reference: float64 then cast).
            x0 = try be.axpby(1, try be.cast(x, to: v.dtype), -flow.sigmas[i], v)
            if i + 1 < flow.timesteps.count {
                let fresh = try noise.renoise(startFrame: start, step: i, count: count, shape: latentShape, on: be)
                let s = flow.sigmas[i + 1]
                x = try be.axpby(1 - s, x0, s, try be.cast(fresh, to: x0.dtype))
            }
        }
        // The clean pass (the block's keys refreshed from its denoised latents) runs when the next
        // block starts; the latents are final now.
        pendingClean = (x0, start)
        try remember(x0)
        try be.synchronize()

        let block = LatentBlock(index: blockIndex, startFrame: start, latents: x0, promptIndex: promptIndex,
                                timings: BlockTimings(seconds: (clock.now - started).seconds,
                                                      recacheSeconds: recacheSeconds, forwards: forwards))
        nextFrame += count
        blockIndex += 1
        return block
    }

    /// Blocks as an async sequence, each generated when the consumer asks for it (no block is ever
    /// dropped or computed ahead; `VideoStream` overlaps generation with decoding). `limit` nil runs
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
