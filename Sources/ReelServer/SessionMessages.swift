import Foundation

// What a session tells its clients: its status (over HTTP and the WebSocket) and, over the WebSocket,
// each part of a block before its frames.

/// A session as `GET /v1/sessions/{id}` and the WebSocket's `session` and `state` messages describe it
/// (the OpenAPI document's `Session`).
struct SessionStatus: Encodable, Sendable, Equatable {
    /// "session" or "state" over the WebSocket; left out over HTTP.
    var type: String?
    var id: String
    var state: SessionState
    var prompt: String
    var seed: Int
    var width: Int, height: Int, fps: Int
    /// null: runs until stopped.
    var seconds: Double?
    var blocks: Int, frames: Int, promptIndex: Int, promptSwitches: Int
    var lastBlockMs: Double, lastDecodeMs: Double
    /// The place in the queue (from 1); null once the session has a device slot.
    var queuePosition: Int?
    /// The recording's path, null until it is complete.
    var video: String?
    /// "video", "image" or null (the prompt alone).
    var input: String?
    /// Frames a live input's client has sent that were taken, and of those, dropped unread because the
    /// pipeline fell behind; left out for other sessions.
    var inputFrames: Int?, inputFramesDropped: Int?
    /// Why generation failed; left out unless it did.
    var error: String?

    private enum CodingKeys: String, CodingKey {
        case type, id, state, prompt, seed, width, height, fps, seconds, blocks, frames, promptIndex, promptSwitches
        case lastBlockMs, lastDecodeMs, queuePosition, video, input, inputFrames, inputFramesDropped, error
    }

    /// `seconds`, `queuePosition`, `video` and `input` are null when nil; `type`, the input counts and `error` are
    /// left out.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(type, forKey: .type)
        try c.encode(id, forKey: .id)
        try c.encode(state, forKey: .state)
        try c.encode(prompt, forKey: .prompt)
        try c.encode(seed, forKey: .seed)
        try c.encode(width, forKey: .width)
        try c.encode(height, forKey: .height)
        try c.encode(fps, forKey: .fps)
        try c.encode(seconds, forKey: .seconds)
        try c.encode(blocks, forKey: .blocks)
        try c.encode(frames, forKey: .frames)
        try c.encode(promptIndex, forKey: .promptIndex)
        try c.encode(promptSwitches, forKey: .promptSwitches)
        try c.encode(lastBlockMs, forKey: .lastBlockMs)
        try c.encode(lastDecodeMs, forKey: .lastDecodeMs)
        try c.encode(queuePosition, forKey: .queuePosition)
        try c.encode(video, forKey: .video)
        try c.encode(input, forKey: .input)
        try c.encodeIfPresent(inputFrames, forKey: .inputFrames)
        try c.encodeIfPresent(inputFramesDropped, forKey: .inputFramesDropped)
        try c.encodeIfPresent(error, forKey: .error)
    }
}

extension SessionState: Encodable {}

/// A part of a block on the WebSocket (the frames of one latent frame), sent before its frames.
struct BlockMessage: Encodable, Sendable {
    let type = "block"
    let session: String
    let index: Int, startFrame: Int, promptIndex: Int
    /// The part's first frame (from the session's first) and its count.
    let firstFrame: Int, frames: Int
    let latentFrame: Int
    let endsBlock: Bool
    let width: Int, height: Int
    let ditMs: Double, recacheMs: Double, decodeMs: Double, encodeMs: Double
    /// Encoded bytes of the part's frames (JPEG or H.264), headers included.
    let bytes: Int
    /// "jpeg" or "h264".
    let codec: String
    /// When the part's frames came out of the decoder, in milliseconds since 1970 (the page measures
    /// glass-to-glass latency from it: it runs on the same clock when it runs on the same machine).
    let madeAt: Double
}

/// An H.264 session's decoder configuration, sent once before its first frame: WebCodecs'
/// `VideoDecoderConfig` (`codec`, and `description`: the AVCDecoderConfigurationRecord, base64).
struct CodecMessage: Encodable, Sendable {
    let type = "codec"
    let session: String
    let codec: String
    let description: String
    let width: Int, height: Int
}
