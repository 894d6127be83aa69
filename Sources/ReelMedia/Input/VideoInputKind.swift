import Foundation
import ReelCore

/// Which reader an input path needs.
public enum VideoInputKind: String, Sendable, CaseIterable {
    /// YUV4MPEG2, read in process (`-` is Y4M on stdin).
    case y4m
    /// A PNG image, decoded in process as one frame.
    case png
    /// A JPEG image, one frame: decoded in process when baseline (`JPEGDecoder`), else by ffmpeg.
    case jpeg
    /// Anything else, decoded by ffmpeg.
    case ffmpeg

    /// The kind for `path`: `-` is Y4M on stdin. A file's first bytes decide: the Y4M, PNG or JPEG signature
    /// picks the built-in reader, anything else goes to ffmpeg (a JPEG named `.png` still opens). Only
    /// without bytes to look at (a FIFO, a device, a URL) does the extension decide (`.y4m`, `.png`).
    public init(path: String, leadingBytes: [UInt8]) {
        if path == "-" || leadingBytes.starts(with: Array("YUV4MPEG2".utf8)) {
            self = .y4m
        } else if leadingBytes.starts(with: PNGEncoder.signature) {
            self = .png
        } else if JPEGDecoder.hasSignature(leadingBytes) {
            self = .jpeg
        } else if !leadingBytes.isEmpty {
            self = .ffmpeg
        } else {
            switch (path as NSString).pathExtension.lowercased() {
            case "y4m": self = .y4m
            case "png": self = .png
            default: self = .ffmpeg
            }
        }
    }
}

/// Opens the input at `path` with the reader its kind needs (`VideoInputKind`): `-` reads Y4M from stdin,
/// Y4M streams, a PNG or a JPEG is a one-frame input (`ImageInput`), and the rest (MP4, WebM, MOV, MKV, JPEG, URLs, devices) go
/// through ffmpeg. `stallTimeout` seconds without a frame make a live input throw; nil waits for ever.
public func openVideoInput(
    path: String, stallTimeout: Double? = nil, environment: [String: String] = ProcessInfo.processInfo.environment
) throws -> any VideoInput {
    if path == "-" { return try Y4MReader.standardInput(stallTimeout: stallTimeout) }
    let isURL = path.contains("://")
    if !isURL, !FileManager.default.fileExists(atPath: path) {
        throw ReelError.badFile(path: path, message: "no such file")
    }
    switch VideoInputKind(path: path, leadingBytes: isURL ? [] : try leadingBytes(of: path)) {
    case .y4m: return try Y4MReader(path: path, stallTimeout: stallTimeout)
    case .png: return try ImageInput(frame: PNGDecoder.decode(path: path), source: path)
    case .jpeg: return try ImageInput(path: path, environment: environment)
    case .ffmpeg: return try FFmpegInput(path: path, stallTimeout: stallTimeout, environment: environment)
    }
}

/// Up to the first 16 bytes of a regular file (none for pipes and devices, which must not be consumed).
func leadingBytes(of path: String) throws -> [UInt8] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw ReelError.badFile(path: path, message: "no such file")
    }
    guard !isDirectory.boolValue else { throw ReelError.badFile(path: path, message: "is a folder, not a file") }
    let type = (try? FileManager.default.attributesOfItem(atPath: path)[.type]) as? FileAttributeType
    guard type == .typeRegular, let handle = FileHandle(forReadingAtPath: path) else { return [] }
    defer { try? handle.close() }
    return [UInt8]((try? handle.read(upToCount: 16)) ?? Data())
}
