import ReelCore

/// Writes a YUV4MPEG2 (`.y4m`) video: a text header, then each frame as "FRAME\n" and its planes.
/// Frames are stored as 4:4:4 Y'CbCr (BT.601, limited range), so no chroma is lost and odd sizes
/// work; ffplay, mpv and VLC play it, and ffmpeg converts it. Built in, needs nothing installed.
///
/// Header: `YUV4MPEG2 W<width> H<height> F<fps>:1 Ip A1:1 C444 XCOLORRANGE=LIMITED`.
public final class Y4MSink: FrameSink {
    public let destination: String
    public let fps: Int
    private var file: OutputFile?
    private var sizeGuard = FrameSizeGuard()
    private var finished = false
    /// Frames written so far.
    public private(set) var framesWritten = 0

    /// Creates (or truncates) `path`; the header is written with the first block, when the size is known.
    public init(path: String, fps: Int = 16) throws {
        try require(fps > 0, "Y4MSink", "fps must be positive, got \(fps)")
        destination = path
        self.fps = fps
        file = try OutputFile(path: path)
    }

    public func write(_ frames: RGBFrames) throws {
        guard let file, !finished else { throw ReelError.invalidArgument(op: "Y4MSink", message: "write after finish") }
        let first = sizeGuard.size == nil
        try sizeGuard.check(frames, sink: "Y4MSink")
        if first {
            try file.write(Array("YUV4MPEG2 W\(frames.width) H\(frames.height) F\(fps):1 Ip A1:1 C444 XCOLORRANGE=LIMITED\n".utf8))
        }
        let n = frames.width * frames.height
        var planes = [UInt8](repeating: 0, count: 3 * n)
        for f in 0..<frames.count {
            frames.pixels.withUnsafeBufferPointer { px in
                let base = f * frames.frameBytes
                for i in 0..<n {
                    let r = Int(px[base + 3 * i]), g = Int(px[base + 3 * i + 1]), b = Int(px[base + 3 * i + 2])
                    planes[i] = UInt8(((66 * r + 129 * g + 25 * b + 128) >> 8) + 16)
                    planes[n + i] = UInt8(((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128)
                    planes[2 * n + i] = UInt8(((112 * r - 94 * g - 18 * b + 128) >> 8) + 128)
                }
            }
            try file.write(Array("FRAME\n".utf8))
            try file.write(planes)
            framesWritten += 1
        }
    }

    public func finish() throws {
        guard !finished else { return }
        finished = true
        try file?.close()
        file = nil
    }
}
