import Foundation
import ReelCore
import ReelMedia
import ReelIO
import ReelModels
import ReelPipeline

/// A session's state as clients see it.
public enum SessionState: String, Sendable {
    case queued, running, paused, finished, failed
}

/// What a session sends to the client watching it.
enum SessionEvent: Sendable {
    /// A status message (`session` or `state`).
    case message(SessionStatus)
    /// A part of a block (the frames of one latent frame: 1 for the video's first, 4 after): its JSON
    /// description, then one binary message per frame (`FrameMessage`). `endsBlock` on the block's last.
    case block(BlockMessage, frames: [[UInt8]], endsBlock: Bool)
    /// An H.264 session's decoder configuration, before its first frame.
    case codec(CodecMessage)
    /// Generation failed: the client is told why (then the `failed` state follows).
    case error(APIError)
}

/// One video being generated: its own pipeline (generator with its KV cache, streaming decoder) over the
/// shared model, steered through the pipeline's control channel: prompt switches, pause and stop take effect
/// at the next block boundary. A watching client paces it: the session stops pulling frames while the client
/// is `maxBlocksAhead` blocks behind, and the pipeline's bounded channels hold the generator.
final class Session: @unchecked Sendable {
    let id: String
    let request: SessionRequest
    let createdAt = Date()
    /// Blocks received from the pipeline but not yet delivered to the watching client before the session
    /// stops pulling. The pipeline buffers about one block more (a block waiting for the decoder), so the
    /// generator runs at most ~2 blocks ahead of the client, as before the pipeline had stages.
    static let maxBlocksAhead = 1
    /// The running pipeline's controls (messages sent before it starts apply at its first block).
    let control = ControlChannel()
    /// Where its input frames come from (nil: a prompt alone).
    let source: SessionSource?
    /// A failure to raise as the device would (`ServerConfiguration.faults`).
    let injectedFault: InjectedFault?

    private let condition = NSCondition()
    // Everything below is guarded by `condition`.
    private var _state: SessionState = .queued
    private var paused = false
    private var stopRequested = false
    private var prompt: String
    private var blocksReceived = 0
    private var blocksDelivered = 0
    private var watcher: AsyncStream<SessionEvent>.Continuation?
    private var _queuePosition: Int?
    private var _lastActivity = ContinuousClock.now
    private var blocks = 0, frames = 0, promptIndex = 0, promptSwitches = 0
    private var lastBlockMs = 0.0, lastDecodeMs = 0.0
    private var failure: String?
    private var _recording: String?
    private var recordingComplete = false

    var task: Task<Void, Never>?

    init(id: String, request: SessionRequest, source: SessionSource? = nil, injectedFault: InjectedFault? = nil) {
        self.id = id
        self.request = request
        self.source = source
        self.injectedFault = injectedFault
        self.prompt = request.prompt
    }

    /// The frames a WebSocket client pushes, for a live input session.
    var liveInput: LiveInput? {
        if case .live(let input) = source { return input }
        return nil
    }

    /// Ends the input and deletes an uploaded file (idempotent): the session has ended or will not run.
    func releaseInput() {
        switch source {
        case .live(let input): input.close()
        case .videoFile(let path): try? FileManager.default.removeItem(atPath: path)
        case .image, nil: break
        }
    }

    var state: SessionState { condition.withLock { _state } }
    var lastActivity: ContinuousClock.Instant { condition.withLock { _lastActivity } }
    var hasWatcher: Bool { condition.withLock { watcher != nil } }
    /// The finished recording's path (nil until the session has ended and the file is complete).
    var recording: String? { condition.withLock { recordingComplete ? _recording : nil } }
    var recordingPath: String? { condition.withLock { _recording } }

    func touch() { condition.withLock { _lastActivity = .now } }

    /// Events for a watching client; a session has at most one watcher.
    func watch() -> AsyncStream<SessionEvent> {
        let (stream, continuation) = AsyncStream<SessionEvent>.makeStream()
        condition.withLock { watcher = continuation }
        continuation.yield(.message(statusMessage(type: "session")))
        return stream
    }

    func send(_ event: SessionEvent) { condition.withLock { _ = watcher?.yield(event) } }

    /// The watcher has sent a block's last part on (its frames are out): the generator may run further. A live
    /// input's stall clock starts afresh: its client (which holds frames back until output comes) is served.
    func delivered() {
        condition.withLock { blocksDelivered += 1; condition.broadcast() }
        liveInput?.restartStallClock()
    }

    // MARK: - Control (any thread)

    func setPrompt(_ text: String) {
        condition.withLock { _lastActivity = .now }
        control.send(.switchPrompt(text))
    }

    func pause() {
        let changed = condition.withLock { () -> Bool in
            _lastActivity = .now
            guard _state == .running || _state == .queued, !paused else { return false }
            paused = true
            if _state == .running { _state = .paused }
            return true
        }
        if changed {
            liveInput?.holdStallClock(true)
            control.send(.pause)
            send(.message(statusMessage(type: "state")))
        }
    }

    func resume() {
        let changed = condition.withLock { () -> Bool in
            _lastActivity = .now
            guard paused else { return false }
            paused = false
            if _state == .paused { _state = .running }
            condition.broadcast()
            return true
        }
        if changed {
            liveInput?.holdStallClock(false)
            control.send(.resume)
            send(.message(statusMessage(type: "state")))
        }
    }

    /// Ends generation at the next block boundary (the block in flight is finished and sent); a live input
    /// ends too (the frames it holds are still read).
    func stop() {
        condition.withLock { stopRequested = true; _lastActivity = .now; condition.broadcast() }
        liveInput?.finish()
        control.send(.stop)
    }

    /// The session has a device slot: it counts as running (or paused) from now on.
    func markStarted() {
        condition.withLock {
            if _state == .queued { _state = paused ? .paused : .running }
            _queuePosition = nil
        }
    }

    func setQueuePosition(_ position: Int?) {
        let changed = condition.withLock { () -> Bool in
            defer { _queuePosition = position }
            return _queuePosition != position
        }
        if changed, position != nil { send(.message(statusMessage(type: "state"))) }
    }

    // MARK: - Pacing

    /// Waits (on a thread of its own) while the watcher is `maxBlocksAhead` blocks behind; returns at once
    /// without a watcher or once stopped.
    private func waitForWatcher() async throws {
        guard condition.withLock({ watcherIsBehind }) else { return }
        try await onThread { [self] in
            condition.lock()
            while watcherIsBehind { condition.wait() }
            condition.unlock()
        }
    }

    /// Whether a stop was asked for.
    var isStopping: Bool { condition.withLock { stopRequested } }

    /// Call with `condition` held.
    private var watcherIsBehind: Bool {
        watcher != nil && !stopRequested && blocksReceived - blocksDelivered >= Self.maxBlocksAhead
    }

    // MARK: - Generation

    /// Generates until the requested length, a stop, or an error; never throws (a failure is a state).
    func run(model: LoadedModel, config: ServerConfiguration, metrics: Metrics) async {
        var sink: (any FrameSink)?
        do {
            if request.record {
                let path = (config.recordingFolder as NSString).appendingPathComponent("\(id).mp4")
                let opened = try VideoSinks.open(path: path, fps: request.fps)
                condition.withLock { _recording = opened.destination }
                sink = opened
            }
            let id = self.id
            // The pipeline object lives as long as its chunks are read (its stages and controls hang on it).
            // The pattern comes in the model's blocks (a LongLive 2.0 model's 8 latent frames, 1.0's 3).
            let patternGeometry = config.testPattern ? try request.geometry(for: model.dit.config) : nil
            let (chunks, pipeline) = try await config.testPattern
                ? (TestPattern.chunks(width: request.width, height: request.height, fps: request.fps,
                                      latentFrames: patternGeometry.flatMap { request.latentFrames(in: $0) },
                                      blockFrames: patternGeometry?.latentFramesPerBlock ?? 3,
                                      backend: model.dit.backend,
                                      isStopped: { [weak self] in self?.isStopping ?? true }), self)
                : makeChunks(model: model)
            defer { withExtendedLifetime(pipeline) {} }
            let encoder = try JPEGEncoder(quality: request.quality)
            var h264: H264StreamEncoder?
            defer { h264?.close() }
            let started = condition.withLock { () -> Bool in
                guard !stopRequested else { return false }
                _state = paused ? .paused : .running
                _queuePosition = nil
                return true
            }
            if started { send(.message(statusMessage(type: "state"))) }
            // Frames go out a latent frame at a time: the first after one latent frame's decode, not a block's.
            var blockDecodeSeconds = 0.0   // the block's parts so far
            for try await chunk in chunks {
                let block = chunk.block, endsBlock = chunk.endsBlock
                if let fault = injectedFault, block.index == fault.block { throw fault.error }
                blockDecodeSeconds += chunk.decodeSeconds
                if chunk.latentFrames.lowerBound == 0 {
                    metrics.add("reel_blocks_generated_total")
                    metrics.add("reel_block_seconds_total", block.timings.seconds)
                    // A live switch (a KV-recache for LongLive 1.0; 2.0's changes only the cross-attention).
                    if let text = block.switchedTo {
                        metrics.add("reel_prompt_switches_total")
                        condition.withLock { prompt = text; promptSwitches += 1 }
                    }
                }
                metrics.add("reel_decode_seconds_total", chunk.decodeSeconds)
                guard let rgb = chunk.frames else { continue }
                let madeAt = Date().timeIntervalSince1970 * 1000   // the frames are made: glass-to-glass starts here
                // Blocking work (the pipe to ffmpeg, JPEG encoding) runs off the cooperative threads.
                let recorder = UncheckedSendable(sink)
                try await onThread { try recorder.value?.write(rgb) }
                let firstFrame = condition.withLock { () -> Int in
                    defer {
                        frames += rgb.count; promptIndex = block.promptIndex
                        if endsBlock {
                            blocks += 1
                            lastBlockMs = block.timings.seconds * 1000; lastDecodeMs = blockDecodeSeconds * 1000
                            blockDecodeSeconds = 0
                        }
                    }
                    return frames
                }
                if endsBlock { condition.withLock { blocksReceived += 1 } }
                guard hasWatcher else {
                    if endsBlock { delivered() }
                    continue
                }
                let encodeStart = ContinuousClock.now
                let (blockIndex, blockPrompt) = (block.index, block.promptIndex)
                let messages: [[UInt8]]
                switch request.codec {
                case .jpeg:
                    // Frames encode in parallel (each is independent; 10-20 ms per 832x480 frame on one core).
                    messages = try await onThread {
                        let slots = FrameSlots(count: rgb.count)
                        DispatchQueue.concurrentPerform(iterations: rgb.count) { i in
                            slots.set(i, FrameMessage.encode(block: blockIndex, frame: firstFrame + i, promptIndex: blockPrompt,
                                                             jpeg: encoder.encode(rgb, frame: i)))
                        }
                        return slots.values
                    }
                case .h264:
                    let stream = try h264 ?? H264StreamEncoder(width: rgb.width, height: rgb.height, fps: request.fps)
                    let started = h264 != nil
                    h264 = stream
                    let encoded = try await onThread { try stream.encode(rgb) }
                    if !started, let description = stream.decoderConfiguration, let codec = stream.codecString {
                        send(.codec(CodecMessage(session: id, codec: codec, description: Data(description).base64EncodedString(),
                                                 width: rgb.width, height: rgb.height)))
                    }
                    messages = encoded.enumerated().map { i, frame in
                        FrameMessage.encode(block: blockIndex, frame: firstFrame + i, promptIndex: blockPrompt, h264: frame)
                    }
                }
                let encodeSeconds = (ContinuousClock.now - encodeStart).seconds
                metrics.add("reel_encode_seconds_total", encodeSeconds)
                let info = BlockMessage(
                    session: id, index: block.index, startFrame: block.startFrame,
                    promptIndex: block.promptIndex, firstFrame: firstFrame, frames: rgb.count,
                    latentFrame: chunk.latentFrames.lowerBound, endsBlock: endsBlock,
                    width: rgb.width, height: rgb.height,
                    ditMs: block.timings.seconds * 1000, recacheMs: block.timings.recacheSeconds * 1000,
                    decodeMs: chunk.decodeSeconds * 1000,
                    encodeMs: encodeSeconds * 1000,
                    bytes: messages.reduce(0) { $0 + $1.count }, codec: request.codec.rawValue, madeAt: madeAt)
                send(.block(info, frames: messages, endsBlock: endsBlock))
                if endsBlock { try await waitForWatcher() }
            }
            let recorder = UncheckedSendable(sink)
            try await onThread { try recorder.value?.finish() }
            releaseInput()
            let stopped = condition.withLock { () -> Bool in
                _state = .finished; recordingComplete = sink != nil; _lastActivity = .now
                return stopRequested
            }
            metrics.ended(stopped ? .stopped : .finished)
        } catch {
            releaseInput()
            try? sink?.finish()
            let (cause, message) = Self.describe(error)
            metrics.ended(.failed)
            metrics.failed(cause)
            condition.withLock {
                _state = .failed
                failure = message
                _lastActivity = .now
            }
            send(.error(APIError(.internalServerError, Self.errorCode(cause), "session \(id) failed: \(message)")))
        }
        send(.message(statusMessage(type: "state")))
    }

    /// Why a generation failed, for /metrics, and what its client is told.
    static func describe(_ error: any Error) -> (Metrics.FailureCause, String) {
        switch error as? ReelError {
        case .outOfMemory?, .overMemoryCap?: (.outOfMemory, "\(error)")
        case .input?, .badFile?: (.input, "\(error)")
        default: (.internalError, "\(error)")
        }
    }

    /// The WebSocket error code of a failed session.
    static func errorCode(_ cause: Metrics.FailureCause) -> String {
        switch cause {
        case .outOfMemory: "out_of_memory"
        case .input: "input_failed"
        case .internalError: "generation_failed"
        }
    }

    /// Ends a session that never got a device slot.
    func endWithoutRunning(metrics: Metrics) {
        metrics.ended(.cancelled)
        releaseInput()
        condition.withLock { stopRequested = true; _state = .finished; _queuePosition = nil; _lastActivity = .now }
        send(.message(statusMessage(type: "state")))
    }

    /// Ends the watcher's event stream (its socket is closing).
    func closeWatcher() {
        condition.withLock {
            watcher?.finish()
            watcher = nil
            condition.broadcast()
        }
    }

    // MARK: - Status

    /// The session as `GET /v1/sessions/{id}` and the WebSocket describe it.
    func statusMessage(type: String? = nil) -> SessionStatus {
        condition.withLock {
            SessionStatus(
                type: type, id: id, state: _state, prompt: prompt, seed: Int(truncatingIfNeeded: request.seed),
                width: request.width, height: request.height, fps: request.fps, seconds: request.seconds,
                blocks: blocks, frames: frames, promptIndex: promptIndex,
                promptSwitches: promptSwitches, lastBlockMs: lastBlockMs, lastDecodeMs: lastDecodeMs,
                queuePosition: _queuePosition, video: recordingComplete ? "/v1/sessions/\(id)/video" : nil,
                input: request.input?.rawValue, inputFrames: liveInput?.framesReceived,
                inputFramesDropped: liveInput?.framesDropped,
                error: failure)
        }
    }
}

/// Results written by parallel workers, one slot each.
final class FrameSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [[UInt8]]
    init(count: Int) { slots = Array(repeating: [], count: count) }
    func set(_ i: Int, _ value: [UInt8]) { lock.withLock { slots[i] = value } }
    var values: [[UInt8]] { lock.withLock { slots } }
}

/// One video frame on the WebSocket: a 16-byte little-endian header, then a baseline JPEG ("RLF1") or an H.264
/// access unit in AVCC form ("RLH1", decoded with the session's `codec` message).
///
///     0  u32  magic "RLF1" | "RLH1"   4  u32  block index
///     8  u32  frame index (from the session's first frame)
///    12  u16  prompt index      14  u8  flags (bit 0: H.264 keyframe)   15  u8  reserved (0)
enum FrameMessage {
    static let magic: [UInt8] = Array("RLF1".utf8)
    static let h264Magic: [UInt8] = Array("RLH1".utf8)
    static let headerBytes = 16

    static func encode(block: Int, frame: Int, promptIndex: Int, jpeg: [UInt8]) -> [UInt8] {
        header(magic, block: block, frame: frame, promptIndex: promptIndex, flags: 0, payload: jpeg.count) + jpeg
    }

    static func encode(block: Int, frame: Int, promptIndex: Int, h264: H264Frame) -> [UInt8] {
        header(h264Magic, block: block, frame: frame, promptIndex: promptIndex, flags: h264.isKey ? 1 : 0,
               payload: h264.data.count) + h264.data
    }

    private static func header(_ magic: [UInt8], block: Int, frame: Int, promptIndex: Int, flags: UInt8, payload: Int) -> [UInt8] {
        var out = magic
        out.reserveCapacity(headerBytes + payload)
        func u32(_ v: Int) { let x = UInt32(truncatingIfNeeded: v); for s in [0, 8, 16, 24] { out.append(UInt8(truncatingIfNeeded: x >> UInt32(s))) } }
        u32(block); u32(frame)
        out += [UInt8(truncatingIfNeeded: promptIndex), UInt8(truncatingIfNeeded: promptIndex >> 8), flags, 0]
        return out
    }

    /// (block, frame, prompt index, JPEG bytes) of a JPEG frame message, or nil when it is not one.
    static func decode(_ bytes: [UInt8]) -> (block: Int, frame: Int, promptIndex: Int, jpeg: ArraySlice<UInt8>)? {
        guard bytes.count > headerBytes, Array(bytes[0..<4]) == magic else { return nil }
        func u32(_ o: Int) -> Int { (0..<4).reduce(0) { $0 | Int(bytes[o + $1]) << (8 * $1) } }
        return (u32(4), u32(8), Int(bytes[12]) | Int(bytes[13]) << 8, bytes[headerBytes...])
    }
}
