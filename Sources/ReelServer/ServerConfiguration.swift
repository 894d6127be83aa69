import Foundation
import ReelCore
import ReelPipeline

/// Limits and defaults of a `reel serve` instance.
public struct ServerConfiguration: Sendable {
    /// Sessions generating at once on the device (each with its own KV cache).
    public var maxActiveSessions = 1
    /// Sessions waiting for a slot beyond the active ones; more are refused with 429.
    public var maxQueuedSessions = 8
    /// A paused, finished or failed session untouched this long is reclaimed.
    public var idleTimeout: Duration = .seconds(300)
    /// How often idle sessions are looked for.
    public var reapInterval: Duration = .seconds(5)
    /// Longest prompt, in UTF-8 bytes (umT5 reads at most 512 tokens).
    public var maxPromptBytes = 2000
    /// Largest control message or request body, in bytes.
    public var maxMessageBytes = 16 * 1024
    /// Video size when a session does not ask for one.
    public var defaultWidth = 832, defaultHeight = 480
    /// Largest width * height a session may ask for.
    public var maxPixels = 1280 * 720
    /// Frame rate the video plays at.
    public var defaultFPS = 16
    /// Video-to-video's noise scale when a session names none (the model folder's reel.json noise_scale, else
    /// StreamDiffusionV2's 0.8).
    public var defaultNoiseScale = StreamV2VSchedule.streamDiffusionV2.noiseScale
    /// Length of a session created over HTTP without `seconds`, and the longest any session may ask for
    /// (nil: live sessions run until stopped).
    public var defaultHTTPSeconds = 10.0
    public var maxSeconds: Double? = nil
    /// JPEG quality of the live frames.
    public var jpegQuality = 80
    /// How far generation may run ahead of real-time playback for a watching client.
    public var playbackLead: Duration = .seconds(1)
    /// Largest input frame a client may send over the WebSocket (a JPEG or PNG message), in bytes.
    public var maxInputFrameBytes = 4 << 20
    /// Largest input frame or uploaded image, in pixels (checked before decoding).
    public var maxInputPixels = 3840 * 2160
    /// Input frames a second a client may send on average (bursts of a second's worth pass); more are dropped.
    public var maxInputFPS = 60.0
    /// Input frames waiting for the pipeline; when more come, the oldest is dropped (a live source keeps
    /// its latest frames). The studio page keeps at most `4 * steps + 8` frames in flight (24 at 4 steps), so
    /// that it never loses one while the session starts (prompt encoding, the first blocks).
    public var inputQueueFrames = 24
    /// A live input with no frame for this long, and no output sent to its client meanwhile, ends its session
    /// with an error (`reel serve --input-timeout`; not while the session is paused).
    public var inputStallSeconds = 15.0
    /// Largest upload (`POST /v1/sessions` as multipart/form-data with an input video or image), in bytes.
    public var maxUploadBytes = 64 << 20
    /// Where recordings (and uploaded input videos, while their session lasts) are written (one file per session,
    /// deleted with it).
    public var recordingFolder: String
    /// The API key, allowed origins and per-client rates.
    public var access = AccessPolicy()
    /// Sessions show `TestPattern` instead of the model's video (`reel serve --test-pattern`: transport checks).
    public var testPattern = false
    /// The device named on the page and in /healthz.
    public var deviceName = "cpu"
    /// A connection with nothing read or written for this long is closed (a request never completed; WebSockets are
    /// pinged every 30 s).
    public var connectionIdleTimeout: Duration = .seconds(60)
    /// Failures injected into sessions, for tests and soaks (none by default; no client can set it).
    public var faults = FaultInjection()
    /// Give the C heap's free pages back to the system after each session's generation ends (`HeapTrimmer`):
    /// without it glibc's arenas keep them and the resident size grows over hours of sessions.
    public var trimsHeapAfterSessions = true

    public init(recordingFolder: String = NSTemporaryDirectory() + "reel-serve-\(ProcessInfo.processInfo.processIdentifier)") {
        self.recordingFolder = recordingFolder
    }
}

/// Failures injected into sessions, to check that a failing session tells its client and leaves the others
/// running. Set by whoever starts the server (tests; `reel serve`'s hidden `--inject-oom-every`), never by a request.
public struct FaultInjection: Sendable, Equatable {
    /// Every this many sessions (the Nth, 2Nth, ... created) fails with a device out-of-memory error; 0: none.
    public var outOfMemoryEvery = 0
    /// The block (from 0) at whose start an injected failure happens.
    public var atBlock = 1

    public init(outOfMemoryEvery: Int = 0, atBlock: Int = 1) {
        self.outOfMemoryEvery = outOfMemoryEvery
        self.atBlock = atBlock
    }

    /// The failure for the session created `ordinal`-th (from 1), and the block it strikes at; nil for most.
    func fault(forSession ordinal: Int) -> InjectedFault? {
        guard outOfMemoryEvery > 0, ordinal % outOfMemoryEvery == 0 else { return nil }
        return InjectedFault(block: atBlock, error: .outOfMemory(backend: "injected", bytes: 1 << 30))
    }
}

/// A failure a session raises at the start of a block, as the device would.
struct InjectedFault: Sendable {
    let block: Int
    let error: ReelError
}
