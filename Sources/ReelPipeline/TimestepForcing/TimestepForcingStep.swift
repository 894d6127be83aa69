import Foundation
import ReelCore
import ReelModels

/// One block on its way through the timestep-forcing stages: what stage i hands to stage i + 1.
struct TimestepForcingItem: @unchecked Sendable {
    var index: Int
    var startFrame: Int
    /// The block's latents at this stage's timestep (nil into the first stage: it draws the initial noise).
    var latents: Tensor?
    /// Reached on the sending stage's stream once `latents` are written.
    var ready: (any BackendEvent)?
    /// The prompt of this block (as encoded, on any device) and its number: a stage that sees a new number
    /// switches before it runs the block.
    var prompt: WanDiT.PromptContext
    var promptIndex: Int
    var switchedTo: String?
    /// Forward passes run for this block so far (steps, recaches, the sink's).
    var forwards: Int = 0
    /// The recache on the last stage (its start and end events), if it ran one for this block.
    var recacheMarks: (any BackendEvent, any BackendEvent)?
    /// The block's start on the stage that ran it last.
    var started: (any BackendEvent)?
}

/// The clean first block, posted once by the last stage and read by every stage before block
/// `TimestepForcingStep.sinkBlock` (LiveAvatar's adaptive sink, broadcast from the decoding rank).
final class SinkBoard: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: (latents: Tensor, ready: any BackendEvent)?
    private var cancelled = false

    func post(_ latents: Tensor, ready: any BackendEvent) {
        condition.lock(); value = (latents, ready); condition.broadcast(); condition.unlock()
    }

    func cancel() { condition.lock(); cancelled = true; condition.broadcast(); condition.unlock() }

    /// The clean first block, waiting until it is posted (nil once cancelled).
    func wait() -> (latents: Tensor, ready: any BackendEvent)? {
        condition.lock(); defer { condition.unlock() }
        while value == nil && !cancelled { condition.wait() }
        return value
    }
}

/// Denoising step `step` of LongLive's schedule as a stage of LiveAvatar's timestep-forcing pipeline
/// (`liveavatar/models/wan/causal_s2v_pipeline_tpp.py`): a whole model with a KV cache of its own that only ever
/// sees this step's timestep. For each block it writes the block's keys at this step's noise level (the forward
/// that denoises it writes them; there is no clean pass), denoises, re-noises to the next step's level with the
/// block's fresh noise (LongLive's rule), and hands the result on. The last step hands on the clean latents.
///
/// - Sink: LiveAvatar's sink is clean (computed at timestep 0 on every DiT rank, attending to itself only) and,
///   after the first clip, the first generated frame's ("adaptive sink"). LongLive's sink is its first block, so
///   here the sink holds the first block at this step's level until block `sinkBlock` (the number of stages:
///   the first block every stage reaches after the last stage finished block 0), then the clean first block's
///   keys, from one forward at timestep 0 alone (as LongLive's clean pass of block 0), with the prompt the stage
///   holds then.
/// - Prompt switch: each stage re-caches its own window when the block that starts the new prompt reaches it:
///   one forward at this step's timestep over the latents it saw at this level (kept for the window), at their
///   positions, with the new prompt (LongLive's recache moved to the stage's level; the sink stays unless the
///   recached span starts at frame 0, as in LongLive).
final class TimestepForcingStep: @unchecked Sendable {
    let model: WanDiT
    let step: Int
    let steps: Int
    let schedule: StreamingSchedule
    let flow: FlowMatchSchedule
    let latentShape: (h: Int, w: Int, c: Int)
    let tokensPerFrame: Int
    let cache: WanKVCache
    let noise: any NoiseSource
    let recacheOnSwitch: Bool
    let cacheDType: DType?
    /// The block before which the sink is rewritten from the clean first block.
    let sinkBlock: Int
    private var prompt: WanDiT.PromptContext?
    private var promptIndex = -1
    /// This step's inputs of the newest frames (at most `schedule.attentionFrames`), oldest first, `[1, H, W, C]`.
    private var recent: [Tensor] = []
    /// What another device's tensors this stage copied from must outlive: each source with an event recorded
    /// on this stage's stream after its copy. Released at the next block, once the event has passed (a copy
    /// between GPUs runs on this stream later than the host issues it; the source's memory must not be reused
    /// before).
    private var copySources: [(source: Any, copied: any BackendEvent)] = []
    /// Timed events of each block on this stage (start, end), newest last, at most `keptMarks`.
    private var marks: [(any BackendEvent, any BackendEvent)] = []
    private let marksLock = NSLock()
    static let keptMarks = 512

    init(model: WanDiT, step: Int, schedule: StreamingSchedule, latentShape: (h: Int, w: Int, c: Int),
         noise: any NoiseSource, recacheOnSwitch: Bool, cacheDType: DType? = nil) throws {
        self.model = model
        self.step = step
        self.steps = schedule.denoisingSteps.count
        self.schedule = schedule
        self.flow = try FlowMatchSchedule(steps: schedule.denoisingSteps, warp: schedule.warpDenoisingSteps, shift: schedule.shift)
        self.latentShape = latentShape
        self.noise = noise
        self.recacheOnSwitch = recacheOnSwitch
        self.cacheDType = cacheDType
        self.sinkBlock = steps
        let c = model.config
        tokensPerFrame = (latentShape.h / c.patch) * (latentShape.w / c.patch)
        cache = try model.makeCache(tokensPerFrame: tokensPerFrame, sinkFrames: schedule.sinkFrames,
                                    windowFrames: schedule.windowFrames, dtype: cacheDType)
    }

    var isLast: Bool { step == steps - 1 }
    var backend: any Backend { model.backend }

    /// Runs this step on `item`; `sink` gives the clean first block when the stage reaches `sinkBlock`.
    /// Returns the item for the next stage (the clean latents from the last).
    func run(_ item: TimestepForcingItem, sink: SinkBoard) throws -> TimestepForcingItem {
        let be = backend
        for kept in copySources { try kept.copied.synchronize() }
        copySources.removeAll()
        let started = try be.recordTimedEvent()
        var out = item
        out.latents = nil
        out.ready = nil
        out.started = started
        if item.promptIndex != promptIndex {
            let recacheStart = try be.recordTimedEvent()
            let first = prompt == nil
            prompt = try item.prompt.handedOver(to: be)
            copySources.append((item.prompt, try be.recordEvent()))
            promptIndex = item.promptIndex
            if !first && recacheOnSwitch, try recache(at: item.startFrame) > 0 {
                out.forwards += 1
                if isLast { out.recacheMarks = (recacheStart, try be.recordTimedEvent()) }
            }
        }
        guard let prompt else { throw ReelError.input("timestep forcing: a block came without a prompt") }
        if item.index == sinkBlock {
            guard let clean = sink.wait() else { throw ReelError.input("timestep forcing: stopped before the sink was made") }
            out.forwards += try refreshSink(clean.latents, ready: clean.ready, prompt: prompt)
        }

        let count = schedule.framesPerBlock, start = item.startFrame
        let x: Tensor
        if let given = item.latents {
            x = try given.handedOver(to: be, ready: item.ready)
            copySources.append((given, try be.recordEvent()))
        } else {
            x = try noise.initial(startFrame: start, count: count, shape: latentShape, on: be)
        }
        try remember(x)
        let t = flow.timesteps[step]
        guard let v = try model.forward(x, timestep: t, prompt: prompt, cache: cache, access: .init(startFrame: start)) else {
            throw ReelError.input("timestep forcing: the DiT gave no output")
        }
        out.forwards += 1
        // x0 = x_t - sigma_t * v (as StreamingGenerator: the reference's float64, then cast).
        let x0 = try be.axpby(1, try be.cast(x, to: v.dtype), -flow.sigmas[step], v)
        if isLast {
            out.latents = x0
        } else {
            let fresh = try noise.renoise(startFrame: start, step: step, count: count, shape: latentShape, on: be)
            let s = flow.sigmas[step + 1]
            out.latents = try be.axpby(1 - s, x0, s, try be.cast(fresh, to: x0.dtype))
        }
        let ended = try be.recordTimedEvent()
        out.ready = ended
        marksLock.withLock {
            marks.append((started, ended))
            if marks.count > Self.keptMarks { marks.removeFirst(marks.count - Self.keptMarks) }
        }
        if isLast && item.index == 0 { sink.post(x0, ready: ended) }
        return out
    }

    /// The stage's recache at block start `s` with its new prompt: LongLive's `_recache_after_switch` over the
    /// latents this stage saw, at its own timestep (see the type's comment). Returns the passes run.
    private func recache(at s: Int) throws -> Int {
        guard let prompt else { return 0 }
        let n = min(schedule.attentionFrames, s)
        guard n > 0 else { return 0 }
        let first = s - n == 0 ? 0 : s - schedule.windowFrames
        let latents = try backend.concat(Array(recent.suffix(s - first)), axis: 0)     // [s - first, H, W, C]
        _ = try model.forward(latents, timestep: flow.timesteps[step], prompt: prompt, cache: cache,
                              access: .init(startFrame: first, needsOutput: false))
        return 1
    }

    /// The sink rewritten from the clean first block: its keys from one forward at timestep 0 over the block
    /// alone (a fresh cache, as LongLive's clean pass of block 0 sees), copied into this stage's sink slots.
    private func refreshSink(_ clean: Tensor, ready: any BackendEvent, prompt: WanDiT.PromptContext) throws -> Int {
        guard schedule.sinkFrames > 0 else { return 0 }
        let x0 = try clean.handedOver(to: backend, ready: ready)
        copySources.append((clean, try backend.recordEvent()))
        let alone = try model.makeCache(tokensPerFrame: tokensPerFrame, sinkFrames: schedule.sinkFrames,
                                        windowFrames: max(1, schedule.framesPerBlock - schedule.sinkFrames),
                                        dtype: cacheDType)
        _ = try model.forward(x0, timestep: schedule.contextNoise, prompt: prompt, cache: alone,
                              access: .init(startFrame: 0, needsOutput: false))
        try cache.copySink(from: alone)
        return 1
    }

    private func remember(_ x: Tensor) throws {
        for f in 0..<x.shape[0] { recent.append(try backend.slice(x, axis: 0, start: f, length: 1)) }
        if recent.count > schedule.attentionFrames { recent.removeFirst(recent.count - schedule.attentionFrames) }
    }

    /// Seconds of each of the newest blocks on this stage (waits for them to have run).
    func blockSeconds() throws -> [Double] {
        try marksLock.withLock { marks }.map { try $0.1.seconds(since: $0.0) }
    }
}
