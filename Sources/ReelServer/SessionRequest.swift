import Foundation

/// What a client asks for when it starts a session (`POST /v1/sessions` or the WebSocket's `start`),
/// checked against the server's limits. JSON: `{"prompt": "...", "seed": 0, "options": {...}}`.
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

    public static let optionNames = ["width", "height", "fps", "seconds", "quality", "record"]

    /// Parses and checks a start request. `live`: whether a client watches (else a length is required).
    public static func parse(_ message: JSON, live: Bool, config: ServerConfiguration) throws(APIError) -> SessionRequest {
        guard case .object(let object) = message else { throw .badRequest("a start request is a JSON object") }
        for key in object.keys where !["type", "prompt", "seed", "options"].contains(key) {
            throw APIError(.badRequest, "unknown_field", "unknown field '\(key)'; a start request has prompt, seed and options")
        }
        let prompt = try checkPrompt(object["prompt"], config: config)
        var seed: UInt64 = 0
        if let value = object["seed"] {
            guard let n = value.int, n >= 0, let s = UInt64(exactly: n) else {
                throw .badRequest("seed must be a non-negative integer")
            }
            seed = s
        }
        var request = SessionRequest(prompt: prompt, seed: seed, width: config.defaultWidth, height: config.defaultHeight,
                                     fps: config.defaultFPS, seconds: live ? nil : config.defaultHTTPSeconds,
                                     quality: config.jpegQuality, record: true)
        guard let optionsValue = object["options"] else { return try request.checked(config) }
        guard case .object(let options) = optionsValue else { throw .badRequest("options must be an object") }
        for (key, value) in options {
            switch key {
            case "width": request.width = try integer(value, key)
            case "height": request.height = try integer(value, key)
            case "fps": request.fps = try integer(value, key)
            case "quality": request.quality = try integer(value, key)
            case "seconds":
                if value == .null { request.seconds = nil; break }
                guard let n = value.double else { throw .badRequest("options.seconds must be a number or null") }
                request.seconds = n
            case "record":
                guard case .bool(let b) = value else { throw .badRequest("options.record must be true or false") }
                request.record = b
            default: throw .unknownOption(key, known: optionNames)
            }
        }
        return try request.checked(config)
    }

    /// A prompt from a message: a non-empty string within the size limit.
    static func checkPrompt(_ value: JSON?, config: ServerConfiguration) throws(APIError) -> String {
        guard let text = value?.string else { throw .badRequest("prompt must be a string") }
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

    /// Latent frames for `seconds` of video: T latents decode to 4T - 3 frames, in whole blocks of 3.
    var latentFrames: Int? {
        seconds.map { seconds in
            let videoFrames = Int((seconds * Double(fps)).rounded(.up))
            let t = (videoFrames + 3 + 3) / 4
            return max(3, (t + 2) / 3 * 3)
        }
    }

    private static func integer(_ value: JSON, _ key: String) throws(APIError) -> Int {
        guard let i = value.int else { throw .badRequest("options.\(key) must be an integer") }
        return i
    }
}
