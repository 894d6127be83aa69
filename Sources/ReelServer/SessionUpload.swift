import Foundation
import Hummingbird
import ReelCore
import ReelMedia

/// `POST /v1/sessions` with an input: `multipart/form-data` (`MultipartForm`) with a `request` part holding the
/// usual JSON (`SessionRequest.Body`) and an `input` part holding the file. An image (a part of type `image/*`,
/// or PNG / JPEG bytes) opens the video (image-to-video: JPEG or PNG; progressive JPEG needs ffmpeg); a video
/// (`video/*` or anything else: Y4M in process, the rest through ffmpeg) is restyled frame for frame
/// (video-to-video), its whole length unless `options.seconds` says less. The video is kept in a temporary file
/// in the recording folder while its session lasts. Errors: 413 `upload_too_large` over `maxUploadBytes`;
/// 400 `bad_upload` for a malformed form or a missing part; 400 `bad_input` for a file that does not decode;
/// 415 `unsupported_media` for a format this server cannot read (no ffmpeg); 501 `no_encoder` for a model
/// without an encoder.
enum SessionUpload {
    static func create(_ request: inout Request, manager: SessionManager) async throws -> Session {
        let config = manager.config
        let body = try await request.collectBody(limit: config.maxUploadBytes + 64 * 1024, tooLarge: APIError(
            .contentTooLarge, "upload_too_large", "an upload has at most \(config.maxUploadBytes) bytes"))
        let form = try MultipartForm([UInt8](body.readableBytesView), contentType: request.headers[.contentType] ?? "")
        guard let json = form.part("request") else {
            throw MultipartForm.bad("no 'request' part (the session request's JSON)")
        }
        guard let file = form.part("input"), !file.body.isEmpty else {
            throw MultipartForm.bad("no 'input' part, or an empty one (the video or image)")
        }
        guard file.body.count <= config.maxUploadBytes else {
            throw APIError(.contentTooLarge, "upload_too_large",
                           "an upload has at most \(config.maxUploadBytes) bytes, this one \(file.body.count)")
        }
        let kind = Self.kind(of: file)
        let asked = try SessionRequest.Body(json: Data(json.body))
        let sessionRequest = try SessionRequest(asked, live: false, upload: kind, config: config)
        if manager.model.makeEncoder == nil {
            throw APIError(.notImplemented, "no_encoder",
                           "this server's model has no encoder, so it takes no \(kind.rawValue) input (prompts only)")
        }
        let bytes = Array(file.body)
        let source: SessionSource
        switch kind {
        case .image:
            let maxPixels = config.maxInputPixels
            let decoded: RGBFrames
            do {
                decoded = try await onThread { try InputImage.decode(bytes, maxPixels: maxPixels, what: "the uploaded image") }
            } catch let error as APIError
                        where error.code == "bad_frame" && !JPEGDecoder.hasSignature(bytes) && !bytes.starts(with: PNGEncoder.signature) {
                throw APIError(.unsupportedMediaType, "unsupported_media", "an uploaded image must be a JPEG or a PNG")
            } catch let error as APIError {
                throw APIError(.badRequest, "bad_input", error.message)
            }
            source = .image(decoded)
        case .video:
            // The file's own extension helps ffmpeg guess the container.
            let ext = file.filename.map { ($0 as NSString).pathExtension }
                .flatMap { $0.isEmpty || $0.count > 8 ? nil : $0 } ?? "video"
            let path = (config.recordingFolder as NSString).appendingPathComponent("upload-\(UUID().uuidString).\(ext)")
            try await onThread { try Self.check(video: bytes, at: path) }
            source = .videoFile(path)
        }
        manager.metrics.add("reel_uploads_total")
        do {
            return try await manager.create(sessionRequest, source: source)
        } catch {
            if case .videoFile(let path) = source { try? FileManager.default.removeItem(atPath: path) }
            throw error
        }
    }

    /// An image by its part's type or, without one, by its signature; anything else is a video.
    static func kind(of part: MultipartForm.Part) -> SessionInput {
        if let type = part.contentType, type.hasPrefix("image/") { return .image }
        if let type = part.contentType, type.hasPrefix("video/") { return .video }
        return JPEGDecoder.hasSignature(part.body) || part.body.starts(with: PNGEncoder.signature) ? .image : .video
    }

    /// Writes the video to `path` and reads its first frame; on failure the file is deleted and the client told why.
    static func check(video bytes: [UInt8], at path: String) throws {
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let input = try openVideoInput(path: path)
            defer { input.close() }
            guard try input.nextFrame() != nil else {
                throw ReelError.badFile(path: "the uploaded video", message: "it has no frame")
            }
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            let message = "\(error)".replacingOccurrences(of: path, with: "the uploaded video")
            if case ReelError.library(name: "ffmpeg", _) = error {
                throw APIError(.unsupportedMediaType, "unsupported_media",
                               message + " (without ffmpeg this server reads Y4M videos only)")
            }
            throw APIError(.badRequest, "bad_input", message)
        }
    }
}
