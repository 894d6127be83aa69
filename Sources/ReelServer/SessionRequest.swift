import Foundation
import ReelCore
import ReelMedia
import ReelModels
import ReelPipeline

/// What a client asks for when it starts a session (`POST /v1/sessions` or the WebSocket's `start`),
/// checked against the server's limits. JSON: `{"prompt": "...", "seed": 0, "options": {...}}`, read as a
/// `Body`, then `init(_:live:config:)` applies the server's defaults and limits.
public struct SessionRequest: Sendable, Equatable {
    public var prompt: String
    public var seed: UInt64
    public var width: Int
    public var height: Int
    public var fps: Int
    /// Video length; nil runs until stopped.
    public var seconds: Double?
    public var quality: Int
    /// Record the video for download (MP4 when ffmpeg exists, else Y4M).
    public var record: Bool
    /// What the video is made from besides the prompt (nil: the prompt alone).
    public var input: SessionInput? = nil
    /// Video-to-video: the initial noise scale (StreamDiffusionV2's `--noise_scale`, 0.2...1) and the
    /// denoising steps a block (1...4, the first of 700, 500, 400, 200).
    public var noiseScale = StreamV2VSchedule.streamDiffusionV2.noiseScale
    public var steps = StreamV2VSchedule.streamDiffusionV2.levels
    /// How the frames travel to a WebSocket client.
    public var codec = FrameCodec.jpeg

    public static let optionNames = ["width", "height", "fps", "seconds", "quality", "record", "input", "noiseScale", "steps",
                                     "codec"]

    static let promptNotAString = APIError.badRequest("prompt must be a string")

    /// A prompt from a message: non-empty once trimmed, within the size limit.
    static func checkPrompt(_ text: String, config: ServerConfiguration) throws(APIError) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw .badRequest("prompt is empty") }
        guard trimmed.utf8.count <= config.maxPromptBytes else {
            throw APIError(.contentTooLarge, "prompt_too_long",
                           "prompt has \(trimmed.utf8.count) bytes; the limit is \(config.maxPromptBytes)")
        }
        return trimmed
    }

    private func checked(_ config: ServerConfiguration) throws(APIError) -> SessionRequest {
        guard width > 0, height > 0, width % 16 == 0, height % 16 == 0 else {
            throw .badRequest("options.width and options.height must be positive multiples of 16, got \(width)x\(height)")
        }
        guard width * height <= config.maxPixels else {
            throw .badRequest("\(width)x\(height) is larger than this server allows (\(config.maxPixels) pixels)")
        }
        guard (1...120).contains(fps) else { throw .badRequest("options.fps must be in 1...120, got \(fps)") }
        guard (1...100).contains(quality) else { throw .badRequest("options.quality must be in 1...100, got \(quality)") }
        guard (0.2...1).contains(noiseScale) else { throw .badRequest("options.noiseScale must be in 0.2...1, got \(noiseScale)") }
        if codec == .h264, FFmpegSink.findFFmpeg() == nil {
            throw APIError(.notImplemented, "codec_unavailable",
                           "this server has no ffmpeg to encode H.264; ask for \"codec\": \"jpeg\"")
        }
        guard (1...StreamV2VSchedule.stepLadder.count).contains(steps) else {
            throw .badRequest("options.steps must be in 1...\(StreamV2VSchedule.stepLadder.count), got \(steps)")
        }
        if let seconds {
            guard seconds > 0, seconds.isFinite else { throw .badRequest("options.seconds must be positive, got \(seconds)") }
            if let limit = config.maxSeconds, seconds > limit {
                throw .badRequest("options.seconds is \(seconds); this server allows at most \(limit)")
            }
        } else if config.maxSeconds != nil {
            var copy = self
            copy.seconds = config.maxSeconds
            return copy
        }
        return self
    }
}

extension SessionRequest {
    /// This request's size as blocks of `config`'s model: LongLive 1.0's blocks of 3 latent frames of 8 pixels, or a
    /// LongLive 2.0 model's blocks of 8 of 16 pixels (`BlockGeometry.matching`). A size the model cannot make is the
    /// client's error.
    func geometry(for config: WanDiTConfig) throws(APIError) -> BlockGeometry {
        do {
            return try BlockGeometry(width: width, height: height).matching(config)
        } catch {
            throw APIError(.badRequest, "bad_size", "options.width and options.height: \(error)")
        }
    }

    /// Latent frames for `seconds` of video in `geometry`'s whole blocks (nil: until stopped).
    func latentFrames(in geometry: BlockGeometry) -> Int? {
        seconds.map { geometry.latentFrames(seconds: $0, fps: fps) }
    }

    /// Throws unless `config`'s model can make this session: its size, and for a LongLive 2.0 model no video input
    /// (StreamDiffusionV2's video-to-video runs LongLive 1.0's DiT; 2.0 takes an image as its first frame).
    func check(for config: WanDiTConfig) throws(APIError) {
        _ = try geometry(for: config)
        if config.runsLongLive2, input == .video {
            throw APIError(.badRequest, "unsupported_input",
                           "options.input 'video' (video-to-video) is LongLive 1.0's; this server's model is LongLive 2.0 "
                           + "(48 latent channels), which takes a prompt, or an image as its first frame")
        }
    }
}

extension SessionRequest {
    /// Throws unless this session's size fits the server's `--gpu-memory` with the model placed as it is
    /// (`ModelPlacement.check`): a larger size than the one the plan was made for may need more device memory
    /// (KV cache, activations, decoder) than the cap leaves. The error names what it needs.
    func checkFits(_ placement: ModelPlacement, config: WanDiTConfig) throws(APIError) {
        let size = try geometry(for: config)
        do { try placement.check(size) } catch {
            throw APIError(.contentTooLarge, "does_not_fit", (error as? ReelError)?.description ?? "\(error)")
        }
    }
}

extension SessionRequest {
    /// The request a start message asks for, checked: the server's defaults fill what it leaves out.
    /// `live`: whether a client watches (else the length defaults to `defaultHTTPSeconds`, or to the whole of an
    /// uploaded video). `upload`: what an HTTP request's uploaded file is (the WebSocket's client names its input
    /// in `options.input` and sends the frames itself).
    public init(_ body: Body, live: Bool, upload: SessionInput? = nil, config: ServerConfiguration) throws(APIError) {
        let options = body.options
        var input = options.input
        if let upload {
            if let named = input, named != upload {
                throw .badRequest("options.input is '\(named.rawValue)' but the uploaded file is \(upload.article)")
            }
            input = upload
        } else if !live, let named = input {
            throw APIError(.badRequest, "no_upload", "options.input '\(named.rawValue)' needs the file: send multipart/form-data "
                           + "with a 'request' part (this JSON) and an 'input' part (the video or image)")
        }
        let defaultSeconds = live || input == .video ? nil : config.defaultHTTPSeconds
        self.init(prompt: try Self.checkPrompt(body.prompt, config: config), seed: body.seed ?? 0,
                  width: options.width ?? config.defaultWidth, height: options.height ?? config.defaultHeight,
                  fps: options.fps ?? config.defaultFPS, seconds: options.seconds ?? defaultSeconds,
                  quality: options.quality ?? config.jpegQuality, record: options.record ?? true, input: input,
                  noiseScale: options.noiseScale ?? config.defaultNoiseScale,
                  steps: options.steps ?? StreamV2VSchedule.streamDiffusionV2.levels, codec: options.codec ?? .jpeg)
        self = try checked(config)
    }
}

extension SessionRequest {
    /// A start request as sent: each field checked for its type (unknown fields and options are refused
    /// by name), each left-out one nil. The WebSocket's also has `"type": "start"`.
    public struct Body: Decodable, Sendable, Equatable {
        public var prompt: String
        public var seed: UInt64?
        public var options = Options()

        private enum CodingKeys: String, CodingKey { case type, prompt, seed, options }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.object(keyedBy: CodingKeys.self, notAnObject: .badRequest("a start request is a JSON object"),
                                       unknownKey: {
                APIError(.badRequest, "unknown_field", "unknown field '\($0)'; a start request has prompt, seed and options")
            })
            guard let prompt = try c.field(String.self, .prompt, else: SessionRequest.promptNotAString) else {
                throw SessionRequest.promptNotAString
            }
            self.prompt = prompt
            let badSeed = APIError.badRequest("seed must be a non-negative integer")
            if let n = try c.field(Int.self, .seed, else: badSeed) {
                guard n >= 0 else { throw badSeed }
                seed = UInt64(n)
            }
            options = try c.field(Options.self, .options, else: .badRequest("options must be an object")) ?? Options()
        }
    }
}

extension SessionRequest.Body {
    /// A start request's `options`, each left-out one nil.
    public struct Options: Decodable, Sendable, Equatable {
        public var width, height, fps, quality: Int?
        /// `.some(nil)`: `"seconds": null`, run until stopped.
        public var seconds: Double??
        public var record: Bool?
        public var input: SessionInput?
        public var noiseScale: Double?
        public var steps: Int?
        public var codec: FrameCodec?

        public init() {}

        private enum CodingKeys: String, CodingKey {
            case width, height, fps, seconds, quality, record, input, noiseScale, steps, codec
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.object(keyedBy: CodingKeys.self, notAnObject: .badRequest("options must be an object"),
                                       unknownKey: { .unknownOption($0, known: SessionRequest.optionNames) })
            func integer(_ key: CodingKeys) throws(APIError) -> Int? {
                try c.field(Int.self, key, else: .badRequest("options.\(key.stringValue) must be an integer"))
            }
            width = try integer(.width)
            height = try integer(.height)
            fps = try integer(.fps)
            quality = try integer(.quality)
            if (try? c.decodeNil(forKey: .seconds)) == true {
                seconds = .some(nil)
            } else if let n = try c.field(Double.self, .seconds, else: .badRequest("options.seconds must be a number or null")) {
                seconds = n
            }
            record = try c.field(Bool.self, .record, else: .badRequest("options.record must be true or false"))
            let badInput = APIError.badRequest("options.input must be \"video\", \"image\" or null")
            if (try? c.decodeNil(forKey: .input)) == true {
                input = nil
            } else if let name = try c.field(String.self, .input, else: badInput) {
                guard let kind = SessionInput(rawValue: name) else { throw badInput }
                input = kind
            }
            noiseScale = try c.field(Double.self, .noiseScale, else: .badRequest("options.noiseScale must be a number"))
            steps = try integer(.steps)
            let badCodec = APIError.badRequest("options.codec must be \"jpeg\" or \"h264\"")
            if let name = try c.field(String.self, .codec, else: badCodec) {
                guard let kind = FrameCodec(rawValue: name) else { throw badCodec }
                codec = kind
            }
        }
    }
}

/// What a session's video is made from besides its prompt.
public enum SessionInput: String, Sendable, Equatable {
    /// Restyled frame for frame by the prompt (`VideoToVideoPipeline`, StreamDiffusionV2's schedule).
    case video
    /// The video's first frames (`ContextEncoder.image`), then generated from the prompt.
    case image

    var article: String { self == .video ? "a video" : "an image" }
}

/// How a session's frames travel over the WebSocket (`options.codec`).
public enum FrameCodec: String, Sendable, Equatable {
    /// Each frame a baseline JPEG (`FrameMessage`, "RLF1"): every browser draws it; ~40 KB a frame at 832x480.
    case jpeg
    /// One H.264 stream per session (`H264StreamEncoder`: a `codec` message with the decoder configuration, then
    /// each frame's access unit, "RLH1"): the page decodes it with WebCodecs' `VideoDecoder`. Needs ffmpeg.
    case h264
}
