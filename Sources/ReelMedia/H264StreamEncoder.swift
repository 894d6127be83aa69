import Foundation
import ReelCore

/// One encoded H.264 frame (an access unit) as WebCodecs' `EncodedVideoChunk` takes it with a `description`:
/// NAL units each prefixed by its 4-byte big-endian length (AVCC).
public struct H264Frame: Sendable, Equatable {
    public var data: [UInt8]
    public var isKey: Bool
}

/// Encodes a stream of frames to H.264 frame by frame, for a client that decodes as they come (the studio's
/// WebCodecs `VideoDecoder`): libx264 through the system ffmpeg, `zerolatency` (no B-frames, no lookahead: each
/// frame in gives its frame out before the next is needed), Constrained Baseline, constant quality (CRF) under a
/// rate cap, a keyframe every 2 s.
///
/// ffmpeg writes FLV to its stdout because FLV frames the stream for free: every video tag is one access unit with
/// its keyframe flag, and the first tag is the AVCDecoderConfigurationRecord (avcC) that a decoder is configured
/// with. FLV (Adobe's Video File Format Specification v10, E.4.3.1 VIDEODATA and AVCVIDEOPACKET):
///
///     header:  "FLV" u8 version  u8 flags  u32be header size (9)   then u32be previous tag size (0)
///     tag:     u8 type (9 = video)  u24be data size  u24be timestamp  u8 timestamp ext  u24be stream id (0)
///              data: u8 (frame type << 4 | codec id 7)  u8 AVC packet type (0 config, 1 NAL units, 2 end)
///                    s24be composition time  payload
///              u32be previous tag size
public final class H264StreamEncoder: @unchecked Sendable {
    public let width: Int, height: Int, fps: Int
    private let process: FFmpegProcess
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var frames: [H264Frame] = []
    private var configuration: [UInt8]?
    private var readerEnded = false
    private var parseError: String?

    /// `crf`: libx264's constant quality (23 is its default); `maxKbps`: the rate cap (VBV over half a second).
    public init(width: Int, height: Int, fps: Int, crf: Int = 23, maxKbps: Int = 5000, executable: String? = nil) throws {
        try require(width > 0 && height > 0 && fps > 0, "H264StreamEncoder", "bad stream \(width)x\(height) at \(fps) FPS")
        guard let exe = executable ?? FFmpegSink.findFFmpeg() else {
            throw ReelError.library(name: "ffmpeg", message: "not found on PATH, needed for H.264 "
                + "(install it, e.g. apt-get install ffmpeg, or set REEL_FFMPEG)")
        }
        self.width = width; self.height = height; self.fps = fps
        process = try FFmpegProcess(executable: exe, arguments: [
            "-hide_banner", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "\(width)x\(height)", "-r", "\(fps)", "-i", "-",
            "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "baseline", "-pix_fmt", "yuv420p",
            "-crf", "\(crf)", "-maxrate", "\(maxKbps)k", "-bufsize", "\(maxKbps / 2)k", "-g", "\(2 * fps)",
            "-f", "flv", "-flvflags", "no_duration_filesize", "-flush_packets", "1", "-",
        ], readOutput: true, stallTimeout: 20)
        let output = process.output!
        Thread.detachNewThread { [self] in readTags(output) }
    }

    /// The AVCDecoderConfigurationRecord (WebCodecs' `description`), once the first frame is encoded.
    public var decoderConfiguration: [UInt8]? { condition.withLock { configuration } }

    /// The WebCodecs / RFC 6381 codec string from the configuration: `avc1.PPCCLL` (profile, constraints, level).
    public var codecString: String? {
        decoderConfiguration.flatMap { c in c.count >= 4 ? String(format: "avc1.%02x%02x%02x", c[1], c[2], c[3]) : nil }
    }

    /// Encodes `frames` and returns their encoded frames, one each, in order.
    public func encode(_ frames: RGBFrames) throws -> [H264Frame] {
        guard frames.width == width, frames.height == height else {
            throw ReelError.invalidArgument(op: "H264StreamEncoder", message: "frames of \(frames.width)x\(frames.height) "
                                            + "in a \(width)x\(height) stream")
        }
        do {
            try process.write(Data(frames.pixels))
        } catch {
            throw failure("stopped taking frames (\(error.localizedDescription))")
        }
        // zerolatency: every frame comes out as soon as it is in; the deadline only catches a wedged ffmpeg.
        let deadline = Date().addingTimeInterval(20)
        let encoded: [H264Frame]? = condition.withLock {
            while self.frames.count < frames.count, !readerEnded, parseError == nil {
                if !condition.wait(until: deadline) { break }
            }
            guard self.frames.count >= frames.count else { return nil }
            defer { self.frames.removeFirst(frames.count) }
            return Array(self.frames.prefix(frames.count))
        }
        guard let encoded else {
            throw failure(condition.withLock { parseError ?? (readerEnded ? "ended its output" : "gave no frame for 20 s") })
        }
        return encoded
    }

    /// Stops ffmpeg (the rest of the stream is not needed) and reaps it.
    public func close() { process.terminate() }

    private func failure(_ what: String) -> ReelError {
        process.terminate()
        let detail = process.finish()
        return ReelError.library(name: "ffmpeg", message: "the H.264 encoder \(what)" + (detail.isEmpty ? "" : ": " + detail))
    }

    /// Reads FLV from ffmpeg's stdout until it ends, keeping the configuration and the frames.
    private func readTags(_ handle: FileHandle) {
        defer { try? handle.close() }   // explicitly: see `StderrCollector`
        var buffer: [UInt8] = []
        var position = 0, headerRead = false
        func u24(_ o: Int) -> Int { Int(buffer[o]) << 16 | Int(buffer[o + 1]) << 8 | Int(buffer[o + 2]) }
        func fail(_ why: String) { condition.withLock { parseError = why; condition.broadcast() } }
        while true {
            let data = handle.availableData
            if data.isEmpty { break }
            buffer += data
            if !headerRead {
                guard buffer.count >= 13 else { continue }
                guard buffer.starts(with: Array("FLV".utf8)) else { return fail("wrote something other than FLV") }
                position = 13   // 9-byte header + previous tag size 0
                headerRead = true
            }
            while buffer.count - position >= 11 {
                let type = buffer[position], size = u24(position + 1)
                let end = position + 11 + size + 4
                guard buffer.count >= end else { break }
                if type == 9, size >= 5 {
                    let body = position + 11
                    let isKey = buffer[body] >> 4 == 1, codec = buffer[body] & 0x0F, packet = buffer[body + 1]
                    guard codec == 7 else { return fail("wrote a video codec other than H.264 (FLV codec \(codec))") }
                    let payload = Array(buffer[(body + 5)..<(body + size)])
                    condition.withLock {
                        if packet == 0 { configuration = payload } else if packet == 1 { frames.append(H264Frame(data: payload, isKey: isKey)) }
                        condition.broadcast()
                    }
                }
                position = end
            }
            if position > 1 << 20 { buffer.removeFirst(position); position = 0 }
        }
        condition.withLock { readerEnded = true; condition.broadcast() }
    }
}
