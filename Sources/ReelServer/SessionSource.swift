import Foundation
import ReelCore
import ReelMedia
import ReelPipeline

/// Where a session's input frames come from (its request's `input` says what they are).
enum SessionSource: Sendable {
    /// Pushed by the session's WebSocket client, one JPEG (or PNG) message a frame, decoded by the socket.
    case live(LiveInput)
    /// An uploaded image, decoded when it came.
    case image(RGBFrames)
    /// An uploaded video: a temporary file, deleted when the session ends.
    case videoFile(String)
}

/// Input images as clients send them: WebSocket frames and uploaded stills.
enum InputImage {
    /// A JPEG or PNG decoded to RGB within `maxPixels`: baseline JPEG (what browsers' `canvas.toBlob` make) and
    /// PNG in process; a JPEG Reel's decoder refuses (progressive, arithmetic-coded, 12-bit) through ffmpeg where
    /// it is installed. The error says what was wrong, for the client.
    static func decode(_ bytes: [UInt8], maxPixels: Int, what: String) throws(APIError) -> RGBFrames {
        do {
            if bytes.starts(with: PNGEncoder.signature) {
                let image = try PNGDecoder.decode(bytes, source: what)
                guard image.width * image.height <= maxPixels else {
                    throw tooLarge(image, maxPixels, what)
                }
                return image
            }
            guard JPEGDecoder.hasSignature(bytes) else {
                throw APIError(.badRequest, "bad_frame", "\(what) is neither a JPEG nor a PNG (its first bytes: "
                               + bytes.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ") + ")")
            }
            if let feature = JPEGDecoder.unsupportedFeature(bytes), FFmpegSink.findFFmpeg() != nil {
                return try throughFFmpeg(bytes, maxPixels: maxPixels, what: "\(what) (\(feature) JPEG)")
            }
            return try JPEGDecoder.decode(bytes, source: what, maxPixels: maxPixels)
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(.badRequest, "bad_frame", (error as? ReelError).map { "\($0)" } ?? "\(what): \(error)")
        }
    }

    private static func throughFFmpeg(_ bytes: [UInt8], maxPixels: Int, what: String) throws -> RGBFrames {
        let path = NSTemporaryDirectory() + "reel-frame-\(UUID().uuidString).jpg"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let image = try ImageInput(path: path).frame
        guard image.width * image.height <= maxPixels else { throw tooLarge(image, maxPixels, what) }
        return image
    }

    private static func tooLarge(_ image: RGBFrames, _ maxPixels: Int, _ what: String) -> ReelError {
        .badFile(path: what, message: "\(image.width)x\(image.height) is more than \(maxPixels) pixels")
    }
}

extension Session {
    /// The chunks of this session's video, and what must stay alive while they are read: the prompt alone
    /// (`Pipeline`), an image that opens the video (`ContextEncoder.image`, then `Pipeline`), or a video restyled
    /// frame for frame (`VideoToVideoPipeline` over the input fitted to the session's size and frame rate).
    func makeChunks(model: LoadedModel) async throws -> (chunks: AsyncThrowingStream<VideoChunk, Error>, pipeline: AnyObject) {
        let request = self.request
        let geometry = try request.geometry(for: model.dit.config)
        let longLive2 = model.dit.config.runsLongLive2
        let context = try await onThread { UncheckedSendable(try model.context(for: request.prompt)) }.value
        guard let kind = request.input else {
            let video = PipelineRequest(geometry: geometry, latentFrames: request.latentFrames(in: geometry),
                                        granularity: .latentFrame)
            let pipeline = try Pipeline(model: model, request: video,
                                        prompt: context, noise: PhiloxNoise(seed: request.seed), control: control)
            return (pipeline.chunks(), pipeline)
        }
        guard let encoder = model.newEncoder() else { throw ReelError.input("the server's model has no encoder for inputs") }
        let source = UncheckedSendable(self.source)
        switch kind {
        case .image:
            let encoder = UncheckedSendable(encoder)
            let image = try await onThread { () throws -> UncheckedSendable<VideoContext> in
                let frame: RGBFrames
                switch source.value {
                case .image(let still): frame = still
                case .live(let live):
                    guard let first = try live.nextFrame() else {
                        throw ReelError.input("the session ended before its image came")
                    }
                    live.close()
                    frame = first
                case .videoFile, nil: throw ReelError.input("an image session has no image")
                }
                let fitted = try FrameFit.cover(frame, width: geometry.width, height: geometry.height)
                // LongLive 2.0: the image alone is the first generated latent frame; 1.0: a still clip of one block.
                let encode = longLive2 ? ContextEncoder.firstFrame : ContextEncoder.image
                return UncheckedSendable(try encode(fitted, encoder.value, geometry, model.encodeStream, model.dit.backend))
            }.value
            // The image is part of the requested length (as `reel generate --image`): 1.0's still clip as context
            // blocks before the generated ones, 2.0's first frame counted among the generated.
            let total = request.latentFrames(in: geometry)
            let generated = longLive2 ? total : total.map { max(geometry.latentFramesPerBlock, $0 - image.latents.shape[0]) }
            let pipeline = try Pipeline(model: model, request: PipelineRequest(geometry: geometry, latentFrames: generated,
                                                                               granularity: .latentFrame, context: image),
                                        prompt: context, noise: PhiloxNoise(seed: request.seed), control: control)
            return (pipeline.chunks(), pipeline)
        case .video:
            // `SessionManager.create` refuses it first; a LongLive 2.0 DiT must not reach StreamDiffusionV2's schedule.
            if longLive2 { try request.check(for: model.dit.config) }
            let input: any VideoInput
            switch source.value {
            case .live(let live): input = live
            case .videoFile(let path): input = try openVideoInput(path: path)
            case .image, nil: throw ReelError.input("a video session has no video")
            }
            let fitted = try FittedInput(input, width: geometry.width, height: geometry.height,
                                         frameRate: try FrameRate(request.fps))
            let v2v = VideoToVideoRequest(geometry: geometry,
                                          schedule: try .streamDiffusionV2(steps: request.steps, noiseScale: request.noiseScale),
                                          maxInputFrames: request.seconds.map { Int(($0 * Double(request.fps)).rounded(.up)) })
            let pipeline = try VideoToVideoPipeline(model: model, encoder: encoder, encodeStream: model.encodeStream, input: fitted,
                                                    request: v2v, prompt: context, noise: PhiloxStreamNoise(seed: request.seed),
                                                    control: control)
            return (pipeline.chunks(), pipeline)
        }
    }
}
