import Foundation
import ReelCore

/// Writes each frame as `frame_000000.png`, `frame_000001.png`, ... in a folder (created if missing).
public final class PNGSequenceSink: FrameSink {
    public let destination: String
    public let fps: Int
    private var sizeGuard = FrameSizeGuard()
    /// Frames written so far.
    public private(set) var framesWritten = 0

    /// Writes into `directory`, creating it when missing; throws when it is a file.
    public init(directory: String, fps: Int = 16) throws {
        try require(fps > 0, "PNGSequenceSink", "fps must be positive, got \(fps)")
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) {
            guard isDir.boolValue else { throw ReelError.badFile(path: directory, message: "exists and is not a folder") }
        } else {
            do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
                throw ReelError.badFile(path: directory, message: "cannot create the folder: \(error.localizedDescription)")
            }
        }
        destination = directory
        self.fps = fps
    }

    /// The path of frame `index`.
    public func path(ofFrame index: Int) -> String {
        let digits = String(index)
        return (destination as NSString).appendingPathComponent("frame_" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits + ".png")
    }

    public func write(_ frames: RGBFrames) throws {
        try sizeGuard.check(frames, sink: "PNGSequenceSink")
        for f in 0..<frames.count {
            let file = try OutputFile(path: path(ofFrame: framesWritten))
            try file.write(try PNGEncoder.encode(width: frames.width, height: frames.height, rgb: frames.frame(f)))
            try file.close()
            framesWritten += 1
        }
    }

    public func finish() throws {}
}
