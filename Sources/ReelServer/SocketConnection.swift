import Foundation
import Hummingbird
import HummingbirdWebSocket
import ReelCore
import ReelMedia

/// One WebSocket client (`/v1/ws`). It steers at most one session at a time; closing the socket
/// removes that session.
///
/// Client -> server, JSON text:
/// `{"type": "start", "prompt": "...", "seed": 0, "options": {"width", "height", "fps", "seconds", "quality", "record",
/// "input", "noiseScale", "steps", "codec"}}` (replaces the socket's session), `{"type": "prompt", "prompt": "..."}` (from the
/// next block on; not for video-to-video, whose prompt is fixed), `{"type": "pause"}`, `{"type": "resume"}`,
/// `{"type": "stop"}` (ends the video; the recording stays downloadable while the socket is open), `{"type": "end"}`
/// (the input has ended: the frames sent are still converted, then the session finishes).
///
/// Input frames, binary: with `options.input` "video" (video-to-video) or "image" (the video opens on it), each
/// binary message is one frame, a JPEG (baseline: Reel's decoder; others through ffmpeg) or a PNG of at most
/// `maxInputFrameBytes` and `maxInputPixels`. Video frames are taken at most `maxInputFPS` a second on average
/// (bursts of up to a second's worth; beyond, frames are dropped), each taken frame is one frame of the video (send them at the session's fps), fitted to its size
/// (scaled to cover, centre-cropped); an image session takes the first. A frame too large or not decodable is
/// answered with an error and ends the input: the frames so far are converted and the session finishes. No frame
/// for `inputStallSeconds` fails the session. A message over twice `maxInputFrameBytes` closes the socket.
///
/// Server -> client: `{"type": "session" | "state", ...status}` (see `GET /v1/sessions/{id}`; a queued
/// session has `queuePosition`), `{"type": "block", ...}` followed by one binary message per frame
/// (`FrameMessage`: 16-byte header + JPEG, or with `options.codec` "h264" an H.264 access unit, after one
/// `{"type": "codec", "codec", "description"}` message), `{"type": "prompt", "prompt"}` acknowledging a prompt, and
/// `{"type": "error", "code", "message"}`; errors leave the socket open. A session whose generation fails
/// (`out_of_memory`, `input_failed`, `generation_failed`) sends such an error, then its `failed` state (with `error`);
/// the socket stays open for another `start`, and other sessions run on. A session the server removes (idle past
/// the idle timeout, deleted over HTTP, the server shutting down) is announced as `session_reclaimed`,
/// `session_deleted` or `shutting_down`.
///
/// Control messages count against the client's `AccessPolicy.messagesPerSecond` (by its address, over all its
/// sockets); one over it is answered `rate_limited` and dropped.
struct SocketConnection: Sendable {
    let manager: SessionManager
    /// The client's address, and the control-message rates of all clients.
    var client = "unknown"
    var limiter = ClientRateLimiter(rate: 0, burstSeconds: 1)

    private enum Outgoing: Sendable {
        case text(String)
        case block(BlockMessage, [[UInt8]], Session, endsBlock: Bool)
    }

    func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async {
        let metrics = manager.metrics
        metrics.adjust("reel_websockets_open", by: 1)
        metrics.add("reel_websockets_opened_total")
        defer { metrics.adjust("reel_websockets_open", by: -1) }
        let (outbox, post) = AsyncStream<Outgoing>.makeStream()
        let current = CurrentSession()
        let pacer = InputPacer(maxFPS: manager.config.maxInputFPS)
        let config = manager.config
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await write(outbox, to: outbound) }
            group.addTask {
                do {
                    for try await message in inbound.messages(maxSize: Self.transportLimit(config)) {
                        metrics.add("reel_websocket_messages_total")
                        do {
                            switch message {
                            case .text(let text):
                                guard text.utf8.count <= config.maxMessageBytes else {
                                    throw APIError(.contentTooLarge, "message_too_large",
                                                   "a control message has at most \(config.maxMessageBytes) bytes, "
                                                       + "this one \(text.utf8.count)")
                                }
                                guard limiter.take(client) else {
                                    metrics.add("reel_requests_rate_limited_total")
                                    throw APIError(.tooManyRequests, "rate_limited",
                                                   "more than \(AccessMiddleware.figure(config.access.messagesPerSecond)) "
                                                       + "control messages a second; this one was dropped")
                                }
                                try await handle(text, current: current, post: post)
                            case .binary(let buffer):
                                try await receiveFrame(Array(buffer.readableBytesView), current: current, pacer: pacer)
                            }
                        } catch let error as APIError {
                            metrics.add("reel_client_errors_total")
                            post.yield(.text(error.socketMessage))
                        } catch {
                            post.yield(.text(APIError(.internalServerError, "internal", "\(error)").socketMessage))
                        }
                    }
                } catch {
                    // A message over the size limit or a broken connection ends the socket.
                }
                if let id = current.take() { await manager.remove(id, reason: .disconnected) }
                post.finish()
            }
        }
    }

    /// A message is read in steps, so that a client is told the first thing wrong in this order: its
    /// type, then (except for `start`) that no session exists, then what its type carries.
    private func handle(_ text: String, current: CurrentSession, post: AsyncStream<Outgoing>.Continuation) async throws {
        let message = Data(text.utf8)
        let type = try ControlMessage(json: message).type
        let config = manager.config
        if type == .start {
            let request = try SessionRequest(SessionRequest.Body(json: message), live: true, config: config)
            if let old = current.take() { await manager.remove(old, reason: .replaced) }
            var source: SessionSource?
            if let input = request.input {
                source = .live(try LiveInput(source: "the client's \(input.rawValue)",
                                             capacity: input == .image ? 1 : config.inputQueueFrames,
                                             stallTimeout: config.inputStallSeconds))
            }
            let (session, stream) = try await manager.create(request, source: source, watched: true)
            current.set(session.id)
            guard let events = stream else { return }
            Task {
                for await event in events {
                    switch event {
                    case .message(let status): post.yield(.text(JSON.text(of: status)))
                    case .block(let info, let frames, let endsBlock): post.yield(.block(info, frames, session, endsBlock: endsBlock))
                    case .codec(let info): post.yield(.text(JSON.text(of: info)))
                    case .error(let error): post.yield(.text(error.socketMessage))
                    }
                }
            }
            return
        }
        guard let id = current.id, let session = await manager.session(id) else {
            throw APIError(.conflict, "no_session", "send {\"type\": \"start\", \"prompt\": ...} first")
        }
        switch type {
        case .prompt:
            guard session.request.input != .video else {
                throw APIError(.conflict, "prompt_fixed",
                               "a video-to-video session keeps its prompt (as StreamDiffusionV2); start a new session to change it")
            }
            let prompt = try SessionRequest.checkPrompt(PromptMessage(json: message).prompt, config: config)
            session.setPrompt(prompt)
            post.yield(.text(JSON.text(of: ["type": "prompt", "session": id, "prompt": prompt])))
        case .pause: session.pause()
        case .resume: session.resume()
        case .stop: await manager.stop(id)
        case .end:
            guard let live = session.liveInput else {
                throw APIError(.conflict, "no_input", "session \(id) has no input to end")
            }
            live.finish()
        case .start: break   // handled above
        }
    }

    /// The largest WebSocket message read: control messages and input frames up to their limits, and frames
    /// up to twice the limit so that their sender is told (beyond, the socket closes).
    static func transportLimit(_ config: ServerConfiguration) -> Int {
        max(config.maxMessageBytes, 2 * config.maxInputFrameBytes, 1 << 16)
    }

    /// A binary message: an input frame for the socket's session, decoded and pushed to its live input.
    private func receiveFrame(_ bytes: [UInt8], current: CurrentSession, pacer: InputPacer) async throws {
        guard let id = current.id, let session = await manager.session(id), let live = session.liveInput else {
            throw APIError(.badRequest, "bad_message", "binary messages are input frames (JPEG or PNG) of a session started "
                           + "with options.input; send control messages as JSON text")
        }
        let metrics = manager.metrics, config = manager.config
        metrics.add("reel_input_frames_received_total")
        metrics.add("reel_input_bytes_received_total", Double(bytes.count))
        let ended = "; the session's input has ended (the frames before it are converted)"
        guard bytes.count <= config.maxInputFrameBytes else {
            metrics.add("reel_input_frames_rejected_total")
            live.finish()
            throw APIError(.contentTooLarge, "frame_too_large",
                           "an input frame has at most \(config.maxInputFrameBytes) bytes, this one \(bytes.count)" + ended)
        }
        guard session.request.input == .image || pacer.take() else {
            metrics.add("reel_input_frames_dropped_total")
            return
        }
        let what = "input frame \(live.framesReceived)"
        let frame: RGBFrames
        do {
            frame = try await onThread { try InputImage.decode(bytes, maxPixels: config.maxInputPixels, what: what) }
        } catch {
            metrics.add("reel_input_frames_rejected_total")
            live.finish()
            let own = error as? APIError ?? APIError(.badRequest, "bad_frame", "\(error)")
            throw APIError(own.status, own.code, own.message + ended)
        }
        switch live.push(frame) {
        case .queued: break
        case .droppedOldest: metrics.add("reel_input_frames_dropped_total")
        case .ended: throw APIError(.conflict, "input_ended", "session \(id) takes no more input frames")
        }
    }

    /// Sends what the session produces, pacing frames to real time: a block is acknowledged to the
    /// generator (with its last part) only when the client's buffer holds less than `playbackLead`.
    private func write(_ outbox: AsyncStream<Outgoing>, to outbound: WebSocketOutboundWriter) async {
        let metrics = manager.metrics, lead = manager.config.playbackLead
        var playhead = ContinuousClock.now
        for await item in outbox {
            do {
                switch item {
                case .text(let text):
                    try await outbound.write(.text(text))
                case .block(let info, let frames, let session, let endsBlock):
                    try await outbound.write(.text(JSON.text(of: info)))
                    for frame in frames {
                        try await outbound.writeBinaryMessage(ByteBuffer(bytes: frame))
                        metrics.add("reel_bytes_sent_total", Double(frame.count))
                    }
                    metrics.add("reel_frames_sent_total", Double(frames.count))
                    playhead = max(playhead, .now) + .seconds(Double(frames.count) / Double(session.request.fps))
                    let wait = playhead - lead - .now
                    if wait > .zero { try? await Task.sleep(for: wait) }
                    if endsBlock { session.delivered() }
                }
            } catch {
                // The socket is closing: drain the outbox and release the generator.
                if case .block(_, _, let session, true) = item { session.delivered() }
            }
        }
    }
}

/// Frames a socket's client may send: `maxFPS` a second on average, a token bucket that holds a second's worth,
/// so that a client's timer jitter (frames bunched after a busy moment) costs no frame while a flood is cut.
final class InputPacer: @unchecked Sendable {
    private let lock = NSLock()
    private let rate: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant?

    init(maxFPS: Double) {
        rate = max(maxFPS, 1e-3)
        tokens = max(maxFPS, 1)
    }

    /// Whether a frame arriving now is taken.
    func take(now: ContinuousClock.Instant = .now) -> Bool {
        lock.withLock {
            if let last { tokens = min(max(rate, 1), tokens + (now - last).seconds * rate) }
            last = now
            guard tokens >= 1 else { return false }
            tokens -= 1
            return true
        }
    }
}

/// The session a socket steers.
final class CurrentSession: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    var id: String? { lock.withLock { value } }
    func set(_ id: String) { lock.withLock { value = id } }
    func take() -> String? { lock.withLock { defer { value = nil }; return value } }
}

/// A control message's `type`, read first: what else the message must hold depends on it.
struct ControlMessage: Decodable {
    enum Kind: String { case start, prompt, pause, resume, stop, end }
    let type: Kind

    private enum CodingKeys: String, CodingKey { case type }

    init(from decoder: any Decoder) throws {
        guard let c = try? decoder.container(keyedBy: CodingKeys.self), let name = try? c.decode(String.self, forKey: .type) else {
            throw APIError.badRequest("a message is a JSON object with a \"type\": start, prompt, pause, resume, stop or end")
        }
        guard let type = Kind(rawValue: name) else {
            throw APIError(.badRequest, "unknown_type",
                           "unknown message type '\(name)'; known: start, prompt, pause, resume, stop, end")
        }
        self.type = type
    }
}

/// `{"type": "prompt", "prompt": "..."}`: the prompt from the next block on (other fields are ignored).
struct PromptMessage: Decodable {
    let prompt: String

    private enum CodingKeys: String, CodingKey { case prompt }

    init(from decoder: any Decoder) throws {
        guard let c = try? decoder.container(keyedBy: CodingKeys.self),
              let prompt = try c.field(String.self, .prompt, else: SessionRequest.promptNotAString) else {
            throw SessionRequest.promptNotAString
        }
        self.prompt = prompt
    }
}
