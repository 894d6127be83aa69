import Foundation
import ReelCore
import ReelModels

/// StreamDiffusionV2's multi-GPU block pipelining (chenfengxu714/StreamDiffusionV2 `streamv2v/inference_pipe.py`)
/// over Reel's stream batch (`StreamBatchGenerator`): the DiT's layers are split into contiguous ranges, one per
/// device (`BlockPipelineRanges`); each device holds only its layers' weights (`WanDiT.loadLayers`) and its
/// layers' KV cache (a `SinkRefreshKVCache` of those layers). A call's stream batch (every denoising level,
/// one forward) runs through the stages in order: the first embeds the latents and runs its layers, each
/// next one takes the hidden state `[1, levels * tokens, dim]` (copied to its device, ordered by the event
/// that made it ready), the last runs the head, takes x0 per level and re-noises the levels, sends the
/// stream batch's new latents back to the first stage and the finished block on. One thread per stage.
///
///     push ──▶ layers 0..<a (device 0) ──[hidden]──▶ layers a..<b (device 1) ──▶ ... ──▶ head, x0, re-noise ──▶ blocks
///                  ▲                                                                        │
///                  └──────────── the stream batch's latents (call k feeds call k + chains) ─┘
///
/// What it changes against the one-device stream batch (the reference does the same): with `chains` = N
/// (the default: one per device) call k continues the stream batch of call k - N, not k - 1, so N stream
/// batches are interleaved and N calls are in work at once, one per stage; level i of call k holds block
/// k - i N, a block leaves after levels x N calls, and the cache rows (shared by the chains, per layer)
/// take every call's keys in call order. `StreamBatchGenerator(chains: N)` is its one-device emulation; with
/// `chains: 1` a call waits for the previous one to leave the last stage (no overlap) and the run is the
/// one-device stream batch itself. The reference's warm-up differs (its first N calls shift rank 0's own
/// inputs, so block 1 enters a second chain un-denoised); here every chain starts from the zero levels of
/// `start`. docs/multi-gpu.md.
///
/// The stage threads hold the generator until `stop()`: call it when done (a session's end).
public final class BlockPipelinedStreamBatch: @unchecked Sendable {
    public let stages: [WanDiT]
    public let ranges: [Range<Int>]
    public let schedule: StreamV2VSchedule
    public let chains: Int
    public let latentShape: (h: Int, w: Int, c: Int)
    /// Each stage's cache (its layers only).
    public let caches: [SinkRefreshKVCache]
    let prompts: [WanDiT.PromptContext]
    let noise: LockedStreamNoise
    let sigmaOfStep: [Float]
    private var motionRule: MotionAwareNoise
    private var nextFrame = 0
    private var blocksIn = 0
    private var inFlight = 0
    private var running = false
    private let inputs: [Channel<BlockPipelineItem>]
    private let feedback: Channel<BlockPipelineLevels>
    private let output: Channel<BlockPipelineOutput>

    /// Loads layers `ranges[i]` of the DiT in `source` on `devices[i]` (nil: `BlockPipelineRanges.even`).
    public static func loadStages(from source: any TensorSource, devices: [any Backend], ranges: [Range<Int>]? = nil,
                                  heads: Int? = nil, dtype: DType = .f32) throws -> (stages: [WanDiT], ranges: [Range<Int>]) {
        var layers = 0
        while source.keys.contains(where: { $0.hasSuffix("blocks.\(layers).self_attn.q.weight") }) { layers += 1 }
        let ranges = try ranges ?? BlockPipelineRanges.even(layers: layers, stages: devices.count)
        if let problem = BlockPipelineRanges.problem(ranges, layers: layers, devices: devices.count) {
            throw ReelError.input("block pipeline: \(problem)")
        }
        try checkDevices(devices)
        return (try zip(ranges, devices).map { try WanDiT.loadLayers($0, from: source, heads: heads, backend: $1, dtype: dtype) },
                ranges)
    }

    static func checkDevices(_ devices: [any Backend]) throws {
        guard !devices.isEmpty else { throw ReelError.input("block pipeline: no devices") }
        for i in devices.indices {
            for j in 0..<i where devices[j].device.isSame(as: devices[i].device) {
                throw ReelError.input("block pipeline: stages \(j) and \(i) are both on \(devices[i].device.name); "
                                      + "each range of layers needs a device of its own")
            }
        }
    }

    /// - Parameters:
    ///   - stages: each device's layers as a model (`loadStages`), in layer order, on distinct devices.
    ///   - ranges: the layers each stage holds (checked against the stages' layer counts).
    ///   - promptEmbedding: the text encoder's output `[tokens, textDim]`, encoded by every stage for its layers.
    ///   - chains: interleaved stream batches (default: one per stage; 1: the one-device schedule, no overlap).
    public init(stages: [WanDiT], ranges: [Range<Int>], promptEmbedding: Tensor, latentHeight: Int, latentWidth: Int,
                schedule: StreamV2VSchedule = .streamDiffusionV2, noise: any StreamNoiseSource, chains: Int? = nil) throws {
        try schedule.validate()
        try Self.checkDevices(stages.map(\.backend))
        guard schedule.streamBatch else {
            throw ReelError.input("block pipeline: it pipelines the stream batch; the schedule has it off")
        }
        let layers = ranges.last?.upperBound ?? 0
        if let problem = BlockPipelineRanges.problem(ranges, layers: layers, devices: stages.count) {
            throw ReelError.input("block pipeline: \(problem)")
        }
        for (i, (m, r)) in zip(stages, ranges).enumerated() {
            guard m.config.layers == r.count else {
                throw ReelError.input("block pipeline: stage \(i) holds \(m.config.layers) layers, its range \(r.lowerBound)..<\(r.upperBound) has \(r.count)")
            }
            guard m.parallelism == nil, m.kvCache == .model else {
                throw ReelError.input("block pipeline: stage \(i) is spread over devices or has a quantized cache; neither combines with it")
            }
            var a = m.config, b = stages[0].config
            a.layers = 0; b.layers = 0
            guard a == b, m.dtype == stages[0].dtype else {
                throw ReelError.input("block pipeline: stage \(i) is not the same model as stage 0")
            }
        }
        let chains = chains ?? stages.count
        guard chains >= 1 else { throw ReelError.input("block pipeline: at least one stream batch, got \(chains)") }
        let c = stages[0].config
        try c.checkLatentSize(height: latentHeight, width: latentWidth)
        self.stages = stages; self.ranges = ranges; self.schedule = schedule; self.chains = chains
        latentShape = (latentHeight, latentWidth, c.inChannels)
        self.noise = LockedStreamNoise(noise)
        motionRule = MotionAwareNoise(initialScale: schedule.noiseScale, enabled: schedule.motionAware)
        sigmaOfStep = try FlowMatchSchedule(steps: Array(0...1000), warp: false, shift: schedule.shift).sigmas
        caches = try stages.map { m in
            try SinkRefreshKVCache(
                backend: m.backend, layers: m.config.layers, rows: schedule.levels,
                tokensPerFrame: (latentHeight / c.patch) * (latentWidth / c.patch), heads: c.heads, headDim: c.headDim,
                slots: schedule.cacheFrames, sinkFrames: schedule.sinkFrames, threshold: schedule.sinkRefreshThreshold,
                totalSteps: schedule.levels, dtype: m.dtype)
        }
        let ready = try promptEmbedding.backend.recordEvent()
        prompts = try stages.map { try $0.encodePrompt(try promptEmbedding.handedOver(to: $0.backend, ready: ready)) }
        inputs = stages.indices.map { Channel(capacity: $0 == 0 ? stages.count : 1) }
        feedback = Channel(capacity: chains + 1)
        output = Channel(capacity: stages.count + 1)
    }

    deinit { stop() }

    /// The device of each stage, in layer order.
    public var stageDevices: [String] { stages.map(\.backend.device.name) }

    /// Starts the session with the first chunk's latents `[n, H, W, C]` on the first stage's device, as
    /// `StreamBatchGenerator.start`: each step runs through every stage in turn on the calling thread. Returns
    /// the first block (on the last stage's device).
    public func start(latents z: Tensor) throws -> StreamV2VBlock {
        guard blocksIn == 0 else { throw ReelError.input("block pipeline: the session has started") }
        let n = try checkLatents(z, frames: nil)
        guard n < schedule.cacheFrames else {
            throw ReelError.input("the first chunk has \(n) latent frames; the \(schedule.cacheFrames)-frame cache "
                                  + "takes at most \(schedule.cacheFrames - 1)")
        }
        let first = stages[0].backend, last = stages[stages.count - 1].backend
        var x = try noisy(z, scale: schedule.noiseScale, block: 0, frames: n)
        let steps = schedule.denoisingSteps
        var x0 = x
        var copied: [Tensor] = []       // every copy's source and result, kept until the devices are done (below)
        for (i, t) in steps.enumerated() {
            let segments = [WanDiT.LevelSegment(frames: n, startFrame: 0, timestep: Float(t), row: 0)]
            var h = x
            for s in stages.indices {
                if s > 0 {
                    copied.append(h)
                    h = try h.handedOver(to: stages[s].backend, ready: try h.backend.recordEvent())
                    copied.append(h)
                }
                h = try stages[s].forwardStage(levels: h, latentHeight: latentShape.h, latentWidth: latentShape.w,
                                               segments: segments, prompt: prompts[s], cache: caches[s],
                                               embeds: s == 0, head: s == stages.count - 1)
            }
            let xl = try x.handedOver(to: last, ready: try first.recordEvent())
            copied += [x, xl]
            x0 = try StreamBatchGenerator.x0(xl, velocity: h, segments: segments, steps: [t], sigmaOfStep: sigmaOfStep)
            if i + 1 < steps.count {
                let renoised = try renoise(x0, to: steps[i + 1], draw: .renoise(block: 0, level: i), frames: n)
                x = try renoised.handedOver(to: first, ready: try last.recordEvent())
                copied += [renoised, x]
            }
        }
        for m in stages { try m.backend.synchronize() }
        copied.removeAll()
        for cache in caches { try cache.replicateFirstRow() }
        nextFrame = n
        blocksIn = 1
        return StreamV2VBlock(index: 0, latents: x0)
    }

    /// Feeds the next block's latent `[1, H, W, C]` (on the first stage's device) and the motion of its frames,
    /// then returns the blocks finished by the calls that left the last stage meanwhile, oldest first: it
    /// waits only while as many calls as stages are in work, so the stages overlap.
    public func push(latent z: Tensor, motion: Double) throws -> [StreamV2VBlock] {
        guard blocksIn > 0 else { throw ReelError.input("block pipeline: start(latents:) comes first") }
        guard motion.isFinite, motion >= 0 else {
            throw ReelError.input("motion must be a finite non-negative RMS difference, got \(motion)")
        }
        _ = try checkLatents(z, frames: 1)
        try startStages()
        let block = blocksIn
        let (s, step) = motionRule.next(motion: motion)
        let x = try noisy(z, scale: s, block: block, frames: 1)
        if let reset = schedule.ropeResetFrame, nextFrame >= reset { nextFrame = schedule.cacheFrames - 1 }
        let item = BlockPipelineItem(call: block, chain: (block - 1) % chains, startFrame: nextFrame,
                                     steps: [step] + schedule.denoisingSteps.dropFirst(), input: x,
                                     ready: try x.backend.recordEvent())
        nextFrame += 1
        blocksIn += 1
        guard inputs[0].send(item) else { throw try stoppedError() }
        inFlight += 1
        var done: [StreamV2VBlock] = []
        while inFlight >= stages.count { if let b = try receive() { done.append(b) } }
        return done
    }

    /// Waits for every call in work and returns the blocks they finished, oldest first.
    public func flush() throws -> [StreamV2VBlock] {
        var done: [StreamV2VBlock] = []
        while inFlight > 0 { if let b = try receive() { done.append(b) } }
        return done
    }

    /// Stops every stage after the call in work.
    public func stop() {
        halt()
        output.cancel()
    }

    /// Stops the stages, leaving the output for the caller to read (a stage's error).
    func halt() {
        for c in inputs { c.cancel() }
        feedback.cancel()
    }

    private func receive() throws -> StreamV2VBlock? {
        guard let out = try output.receive() else { throw try stoppedError() }
        inFlight -= 1
        return out.finished
    }

    private func stoppedError() throws -> Error {
        while try output.receive() != nil {}        // rethrows a stage's error when there is one
        return ReelError.input("block pipeline: the stages stopped")
    }

    private func startStages() throws {
        guard !running else { return }
        let zeros = try stages[0].backend.zeros([1, latentShape.h, latentShape.w, latentShape.c], dtype: stages[0].dtype)
        let initial = Array(repeating: BlockPipelineLevel(latents: zeros, startFrame: nextFrame, block: -1),
                            count: schedule.levels)
        running = true
        for s in stages.indices {
            let stage = BlockPipelineStage(owner: self, index: s, initial: initial)
            let (input, next) = (inputs[s], s + 1 < stages.count ? inputs[s + 1] : nil)
            let (feedback, output) = (self.feedback, self.output)
            Thread.detachNewThread {
                stage.run(input: input, next: next, feedback: feedback, output: output)
            }
        }
    }

    // MARK: - Steps (the same ops as StreamBatchGenerator's)

    func noisy(_ z: Tensor, scale s: Double, block: Int, frames: Int) throws -> Tensor {
        let be = z.backend, dtype = stages[0].dtype
        let eps = try noise.draw(.input(block: block), frames: frames, shape: latentShape, on: be)
        let mixed = try be.axpby(Float(s), try be.cast(eps, to: .f32), Float(1 - s), try be.cast(z, to: .f32))
        return try be.cast(mixed, to: dtype)
    }

    func renoise(_ x0: Tensor, to t: Int, draw: StreamNoiseDraw, frames: Int) throws -> Tensor {
        let be = x0.backend
        let eps = try noise.draw(draw, frames: frames, shape: latentShape, on: be)
        let s = sigmaOfStep[t]
        return try be.axpby(1 - s, x0, s, try be.cast(eps, to: x0.dtype))
    }

    private func checkLatents(_ z: Tensor, frames: Int?) throws -> Int {
        let (h, w, c) = latentShape
        guard z.rank == 4, z.shape[1] == h, z.shape[2] == w, z.shape[3] == c, z.shape[0] >= 1,
              frames == nil || z.shape[0] == frames else {
            throw ReelError.input("latents must be [\(frames.map(String.init) ?? "frames"), \(h), \(w), \(c)], got \(z.shape)")
        }
        guard z.backend === stages[0].backend else {
            throw ReelError.input("block pipeline: the latents must live on the first stage's device (\(stages[0].backend.device.name))")
        }
        return z.shape[0]
    }
}

struct BlockPipelineLevel {
    var latents: Tensor
    var startFrame: Int
    var block: Int
}

/// A call in work: the new block's noisy latents (first stage), then the stream batch's hidden state.
struct BlockPipelineItem: @unchecked Sendable {
    let call: Int
    let chain: Int
    let startFrame: Int
    let steps: [Int]
    var input: Tensor
    var ready: any BackendEvent
    /// The stream batch (level 0 first) and its latents `[levels, H, W, C]`, set by the first stage.
    var levels: [BlockPipelineLevel] = []
    var latents: Tensor?
    var segments: [WanDiT.LevelSegment] = []
    /// Marks `latents` written on the first stage's device.
    var latentsReady: (any BackendEvent)?
    /// Tensors copied to a stage's device, kept until the next call there (GPU copies run later than issued).
    var keep: [Tensor] = []
}

/// A chain's stream batch after a call, on the last stage's device, for the first stage.
struct BlockPipelineLevels: @unchecked Sendable {
    let call: Int
    let levels: [BlockPipelineLevel]
    let ready: any BackendEvent
}

struct BlockPipelineOutput: @unchecked Sendable {
    let call: Int
    let finished: StreamV2VBlock?
}

/// One stage's thread: its layers over each call's stream batch.
final class BlockPipelineStage: @unchecked Sendable {
    let owner: BlockPipelinedStreamBatch     // kept by the stage threads until `stop()`
    let index: Int
    var batches: [[BlockPipelineLevel]]
    var fed: [Bool]
    /// The tensors a call copied between devices (sources and results) and an event after the copies: kept
    /// until that event has passed, at the stage's next call (a GPU copy runs later than it is issued).
    var held: [Tensor] = []
    var heldReady: (any BackendEvent)?

    init(owner: BlockPipelinedStreamBatch, index: Int, initial: [BlockPipelineLevel]) {
        self.owner = owner; self.index = index
        batches = Array(repeating: initial, count: owner.chains)
        fed = Array(repeating: false, count: owner.chains)
    }

    func run(input: Channel<BlockPipelineItem>, next: Channel<BlockPipelineItem>?,
             feedback: Channel<BlockPipelineLevels>, output: Channel<BlockPipelineOutput>) {
        do {
            let model = owner.stages[index]
            try model.backend.bindDevice()
            while let item = try input.receive() {
                let made = try step(item, feedback: feedback)
                if let next {
                    guard next.send(made.item) else { input.cancel(); return }
                } else {
                    guard feedback.send(made.levels!), output.send(made.output!) else { input.cancel(); return }
                }
            }
            if next == nil { output.finish() }
        } catch {
            output.finish(throwing: error)
            owner.halt()
        }
    }

    func step(_ item: BlockPipelineItem, feedback: Channel<BlockPipelineLevels>)
        throws -> (item: BlockPipelineItem, levels: BlockPipelineLevels?, output: BlockPipelineOutput?) {
        let o = owner, model = o.stages[index], be = model.backend, last = index == o.stages.count - 1
        var item = item
        var hidden: Tensor
        var keep: [Tensor] = []
        try heldReady?.synchronize()
        held = []
        heldReady = nil
        if index == 0 {
            // The chain's stream batch: from the last stage's re-noising of its previous call (or start's zeros).
            if fed[item.chain] {
                guard let back = try feedback.receive() else { throw ReelError.input("block pipeline: the stages stopped") }
                guard back.call == item.call - o.chains else {
                    throw ReelError.input("block pipeline: call \(item.call) got the stream batch of call \(back.call), "
                                          + "expected \(item.call - o.chains)")
                }
                batches[item.chain] = try back.levels.map {
                    let moved = try $0.latents.handedOver(to: be, ready: back.ready)
                    keep += [$0.latents, moved]
                    return BlockPipelineLevel(latents: moved, startFrame: $0.startFrame, block: $0.block)
                }
            }
            fed[item.chain] = true
            var levels = batches[item.chain]
            levels.insert(BlockPipelineLevel(latents: item.input, startFrame: item.startFrame, block: item.call), at: 0)
            levels.removeLast()
            item.levels = levels
            item.segments = levels.enumerated().map {
                WanDiT.LevelSegment(frames: 1, startFrame: $0.element.startFrame, timestep: Float(item.steps[$0.offset]),
                                    row: $0.offset)
            }
            let x = try be.concat(levels.map(\.latents), axis: 0)
            item.latents = x
            hidden = x
        } else {
            hidden = try item.input.handedOver(to: be, ready: item.ready)
            keep += [item.input, hidden]
        }
        if !keep.isEmpty { heldReady = try be.recordEvent() }
        let out = try model.forwardStage(levels: hidden, latentHeight: o.latentShape.h, latentWidth: o.latentShape.w,
                                         segments: item.segments, prompt: o.prompts[index], cache: o.caches[index],
                                         embeds: index == 0, head: last)
        let ready = try be.recordEvent()
        held = keep + [out]
        if index == 0 { item.latentsReady = ready }
        if !last {
            item.input = out
            item.ready = ready
            return (item, nil, nil)
        }
        // The last stage: x0 per level, re-noised to the next step; the chain goes back to the first stage.
        let x = index == 0 ? item.latents! : try item.latents!.handedOver(to: be, ready: item.latentsReady)
        if index > 0 {
            held += [item.latents!, x]
            heldReady = try be.recordEvent()
        }
        let x0 = try StreamBatchGenerator.x0(x, velocity: out, segments: item.segments, steps: item.steps,
                                            sigmaOfStep: o.sigmaOfStep)
        var levels = item.levels.map { (latents: $0.latents, startFrame: $0.startFrame, block: $0.block) }
        let finished = try StreamBatchGenerator.advance(&levels, x0: x0, steps: item.steps, call: item.call) {
            try o.renoise($0, to: $1, draw: $2, frames: 1)
        }
        let back = BlockPipelineLevels(call: item.call, levels: levels.map {
            BlockPipelineLevel(latents: $0.latents, startFrame: $0.startFrame, block: $0.block)
        }, ready: try be.recordEvent())
        return (item, back, BlockPipelineOutput(call: item.call, finished: finished))
    }
}

/// A noise source shared by the calling thread and the last stage's, one draw at a time.
final class LockedStreamNoise: StreamNoiseSource, @unchecked Sendable {
    let source: any StreamNoiseSource
    private let lock = NSLock()
    init(_ source: any StreamNoiseSource) { self.source = source }
    func draw(_ draw: StreamNoiseDraw, frames: Int, shape: (h: Int, w: Int, c: Int), on backend: any Backend) throws -> Tensor {
        try lock.withLock { try source.draw(draw, frames: frames, shape: shape, on: backend) }
    }
}
