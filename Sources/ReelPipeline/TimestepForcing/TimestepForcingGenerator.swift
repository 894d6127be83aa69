import Foundation
import ReelCore
import ReelModels

/// LiveAvatar's timestep-forcing pipeline parallelism (`liveavatar/models/wan/causal_s2v_pipeline_tpp.py`) over
/// LongLive's schedule: device i holds a whole replica of the DiT with a KV cache of its own and always runs
/// denoising step i (`TimestepForcingStep`); block b is at stage i at tick b + i, so the devices work on
/// different blocks at once and a block leaves every step's time instead of every block's. Each stage runs on
/// a thread of its own issuing to its device's stream, joined by bounded channels that carry the latents with
/// the event that makes them ready (copied across devices, ordered by that event); the last stage hands the
/// clean latents on, to the pipeline's Decoder stage.
///
///     feed ──▶ step 0 (device 0) ──▶ step 1 (device 1) ──▶ ... ──▶ step N-1 ──[clean latents]──▶ decoder
///                 ▲                                                     │
///                 └──────────── the clean first block (the sink) ───────┘
///
/// Against LongLive's exact schedule (`StreamingGenerator`) it changes what the blocks attend to: a block's
/// step i sees the earlier blocks' keys at step i's noise level (written by their own step-i forward), not
/// their clean keys, and there is no clean pass (4 forwards a block instead of 5); the sink is the clean first
/// block from block N on; a switch's recache runs on every stage at its level. It is an approximation by
/// name (DESIGN decision 11), never the default; its error against the exact schedule is measured in
/// `TimestepForcingTests`. docs/multi-gpu.md.
///
/// `issueBlock` keeps N blocks in flight: it feeds blocks into the first stage up to N ahead of the one it
/// returns, asking the prompt script for each block as it is fed, and a live switch applies to the next block
/// fed (N - 1 blocks later than on one device).
public final class TimestepForcingGenerator: BlockGenerator, @unchecked Sendable {
    /// The first stage's replica (the pipeline's DiT: prompts are encoded with it).
    public let model: WanDiT
    public let replicas: [WanDiT]
    public let schedule: StreamingSchedule
    let steps: [TimestepForcingStep]
    private let inputs: [Channel<TimestepForcingItem>]
    private let output: Channel<TimestepForcingItem>
    private let sink = SinkBoard()
    private var front: TimestepForcingFront
    /// The stages' threads while they run (`stop` waits for them).
    private let stageThreads = DispatchGroup()
    private let lock = NSLock()
    private var running = false
    private var returnedFrames = 0

    /// - Parameters:
    ///   - replicas: one whole model per denoising step, each on a device of its own (replica i runs step i).
    ///   - latentFrames: frames to generate (nil: until stopped); no block past it is fed.
    ///   - script: switches fixed before the start, asked with each block's first frame as it is fed.
    public init(replicas: [WanDiT], prompt: WanDiT.PromptContext, latentHeight: Int, latentWidth: Int,
                schedule: StreamingSchedule = .longLive, noise: any NoiseSource, recacheOnSwitch: Bool = true,
                latentFrames: Int? = nil, script: PromptScript? = nil, cacheDType: DType? = nil) throws {
        try Self.check(replicas: replicas, schedule: schedule)
        try schedule.validate()
        try replicas[0].config.checkLatentSize(height: latentHeight, width: latentWidth)
        let shape = (latentHeight, latentWidth, replicas[0].config.inChannels)
        model = replicas[0]
        self.replicas = replicas
        self.schedule = schedule
        steps = try replicas.enumerated().map { i, m in
            try TimestepForcingStep(model: m, step: i, schedule: schedule, latentShape: shape, noise: noise,
                                    recacheOnSwitch: recacheOnSwitch, cacheDType: cacheDType)
        }
        let n = replicas.count
        // The first stage's channel holds the blocks fed ahead; the others one block each, beside the one in work.
        inputs = (0..<n).map { Channel(capacity: $0 == 0 ? n : 1) }
        output = Channel(capacity: 1)
        front = TimestepForcingFront(prompt: prompt, framesPerBlock: schedule.framesPerBlock, limit: latentFrames,
                                     script: script)
    }

    deinit { stop() }

    /// Why `replicas` cannot run `schedule` by timestep forcing (nil: they can).
    static func check(replicas: [WanDiT], schedule: StreamingSchedule) throws {
        let steps = schedule.denoisingSteps.count
        guard replicas.count == steps else {
            throw ReelError.input("timestep forcing runs one denoising step per device: this schedule's \(steps) steps "
                                  + "need \(steps) devices (e.g. --devices \((0..<steps).map(String.init).joined(separator: ","))), "
                                  + "got \(replicas.count); steps are not grouped onto fewer devices")
        }
        for (i, m) in replicas.enumerated() {
            if m.parallelism != nil {
                throw ReelError.input("timestep forcing takes a whole model per device: replica \(i) is spread by sequence "
                                      + "parallelism, which does not combine with it")
            }
            if m.config != replicas[0].config || m.dtype != replicas[0].dtype {
                throw ReelError.input("timestep forcing: replica \(i) is not the same model as replica 0")
            }
            if m.config.runsLongLive2 {
                throw ReelError.input("timestep forcing runs LongLive 1.0's schedule; this DiT (48 latent channels) is LongLive 2.0's")
            }
            for j in 0..<i where replicas[j].backend.device.isSame(as: m.backend.device) {
                throw ReelError.input("timestep forcing: replicas \(j) and \(i) are both on \(m.backend.device.name); "
                                      + "each step needs a device of its own")
            }
        }
        guard schedule.sinkFrames <= schedule.framesPerBlock else {
            throw ReelError.input("timestep forcing takes its sink from the first block: \(schedule.sinkFrames) sink frames "
                                  + "do not fit a block of \(schedule.framesPerBlock)")
        }
    }

    public var framesPerBlock: Int { schedule.framesPerBlock }
    /// Index of the next block's first latent frame to be returned.
    public var currentFrame: Int { returnedFrames }
    public var contextFrames: Int { 0 }
    /// Bytes of every stage's cache together.
    public var cacheBytes: Int { steps.map(\.cache.byteCount).reduce(0, +) }
    /// Every stage's cache traffic in host memory together (nil when none lives there).
    public var cacheHostTraffic: (uploaded: Int, writtenBack: Int)? {
        let each = steps.compactMap(\.cache.hostTraffic)
        return each.isEmpty ? nil : (each.map(\.uploaded).reduce(0, +), each.map(\.writtenBack).reduce(0, +))
    }

    public func switchPrompt(to newPrompt: WanDiT.PromptContext) { switchPrompt(to: newPrompt, text: nil) }

    /// Changes the prompt from the next block fed on; `text` labels the block that starts it. Any thread.
    public func switchPrompt(to newPrompt: WanDiT.PromptContext, text: String?) {
        lock.withLock { front.pending = (newPrompt, text) }
    }

    public func issueContextBlock(_ latents: Tensor, shown: Bool) throws -> LatentBlock {
        throw ReelError.input("timestep forcing starts from noise: a context (an image, a video to continue) runs "
                              + "LongLive's exact schedule on one device")
    }

    /// Feeds the first stage up to N blocks ahead, then returns the oldest block in flight once the last stage
    /// has issued it (its `ready` event marks the clean latents written on the last device).
    public func issueBlock() throws -> LatentBlock {
        startStages()
        while let item = try lock.withLock({ try front.next(ahead: steps.count) }) {
            guard inputs[0].send(item) else { break }
        }
        guard let item = try output.receive(), let latents = item.latents, let ready = item.ready else {
            throw ReelError.input("timestep forcing: the stages stopped")
        }
        lock.withLock { front.returned += 1 }
        returnedFrames = item.startFrame + latents.shape[0]
        var block = LatentBlock(index: item.index, startFrame: item.startFrame, latents: latents, promptIndex: item.promptIndex,
                                ready: ready, timings: BlockTimings(seconds: .nan, recacheSeconds: 0, forwards: item.forwards))
        block.switchedTo = item.switchedTo
        if let started = item.started { block.marks = (started, item.recacheMarks) }
        return block
    }

    /// Stops every stage after the block in work (the generator is done with) and returns once their threads have:
    /// the caller may then act on an error (a command exits) without a stage still issuing device work.
    public func stop() {
        for c in inputs { c.cancel() }
        output.cancel()
        sink.cancel()
        stageThreads.wait()
    }

    /// Seconds of each of the newest blocks (at most 512) on each stage, `[stage][block]`: waits for them to have run.
    public func stageSeconds() throws -> [[Double]] { try steps.map { try $0.blockSeconds() } }

    /// Blocks fed into the first stage so far (N ahead of those returned, once running).
    var blocksFed: Int { lock.withLock { front.fed } }

    /// The device each stage runs on, in step order.
    public var stageDevices: [String] { replicas.map(\.backend.device.name) }

    private func startStages() {
        guard lock.withLock({ let was = running; running = true; return !was }) else { return }
        for (i, step) in steps.enumerated() {
            let (input, next, sink, threads) = (inputs[i], i + 1 < steps.count ? inputs[i + 1] : output, sink, stageThreads)
            threads.enter()
            Thread.detachNewThread {
                Self.runStage(step, input: input, next: next, sink: sink)
                threads.leave()
            }
        }
    }

    /// A stage's thread: the blocks from `input`, each run and handed to `next`, until either end stops.
    private static func runStage(_ step: TimestepForcingStep, input: Channel<TimestepForcingItem>,
                                 next: Channel<TimestepForcingItem>, sink: SinkBoard) {
        do {
            try step.backend.bindDevice()
            while let item = try input.receive() {
                guard next.send(try step.run(item, sink: sink)) else {
                    input.cancel()
                    return
                }
            }
            next.finish()
        } catch {
            next.finish(throwing: error)
            input.cancel()
            sink.cancel()
        }
    }
}

/// Which block goes in next and with which prompt: the feeding side of a timestep-forcing run, shared by the
/// pipelined generator and its one-device emulation.
struct TimestepForcingFront {
    var prompt: WanDiT.PromptContext
    var promptIndex = 0
    var pending: (WanDiT.PromptContext, String?)?
    let framesPerBlock: Int
    let limit: Int?
    let script: PromptScript?
    var fed = 0
    var returned = 0

    init(prompt: WanDiT.PromptContext, framesPerBlock: Int, limit: Int?, script: PromptScript?) {
        self.prompt = prompt; self.framesPerBlock = framesPerBlock; self.limit = limit; self.script = script
    }

    /// The next block to feed, while fewer than `ahead` are in flight and the limit allows one; nil otherwise.
    mutating func next(ahead: Int) throws -> TimestepForcingItem? {
        let start = fed * framesPerBlock
        guard fed < returned + ahead, limit.map({ start < $0 }) ?? true else { return nil }
        var label: String?
        if let (context, text) = pending {
            pending = nil
            prompt = context; promptIndex += 1; label = text
        } else if let scripted = try script?(start) {
            prompt = scripted; promptIndex += 1
        }
        defer { fed += 1 }
        return TimestepForcingItem(index: fed, startFrame: start, latents: nil, ready: nil, prompt: prompt,
                                   promptIndex: promptIndex, switchedTo: label)
    }
}

/// The timestep-forcing schedule on one device, one step after another: the same stages (a cache per step)
/// run in order for each block on the calling thread. The pipelined generator must make exactly its latents;
/// it is the oracle of `TimestepForcingTests`, not a way to run fast.
public final class TimestepForcingEmulation: @unchecked Sendable {
    let steps: [TimestepForcingStep]
    private let sink = SinkBoard()
    private var front: TimestepForcingFront

    public init(model: WanDiT, prompt: WanDiT.PromptContext, latentHeight: Int, latentWidth: Int,
                schedule: StreamingSchedule = .longLive, noise: any NoiseSource, recacheOnSwitch: Bool = true) throws {
        try schedule.validate()
        try model.config.checkLatentSize(height: latentHeight, width: latentWidth)
        let shape = (latentHeight, latentWidth, model.config.inChannels)
        steps = try schedule.denoisingSteps.indices.map {
            try TimestepForcingStep(model: model, step: $0, schedule: schedule, latentShape: shape, noise: noise,
                                    recacheOnSwitch: recacheOnSwitch)
        }
        front = TimestepForcingFront(prompt: prompt, framesPerBlock: schedule.framesPerBlock, limit: nil, script: nil)
    }

    /// Changes the prompt from the next block on.
    public func switchPrompt(to newPrompt: WanDiT.PromptContext) { front.pending = (newPrompt, nil) }

    /// The next block's clean latents, through every step in turn.
    public func nextBlock() throws -> Tensor {
        guard var item = try front.next(ahead: 1) else { throw ReelError.input("timestep forcing: no block to feed") }
        for step in steps { item = try step.run(item, sink: sink) }
        front.returned += 1
        guard let latents = item.latents else { throw ReelError.input("timestep forcing: the last step gave no latents") }
        return latents
    }
}
