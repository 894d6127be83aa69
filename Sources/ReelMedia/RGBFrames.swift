import ReelCore

/// A block of 8-bit RGB video frames, row-major, pixels interleaved R, G, B: `[count, height, width, 3]`.
public struct RGBFrames: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let count: Int
    public let pixels: [UInt8]

    /// Bytes of one frame.
    public var frameBytes: Int { width * height * 3 }

    /// Frames from raw bytes; throws unless `pixels` holds a whole number of `width` x `height` RGB frames.
    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0 else {
            throw ReelError.invalidArgument(op: "RGBFrames", message: "frame size \(width)x\(height) must be positive")
        }
        guard pixels.count % (width * height * 3) == 0 else {
            throw ReelError.invalidArgument(op: "RGBFrames", message: "\(pixels.count) bytes is not a whole number of \(width)x\(height) RGB frames")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
        count = pixels.count / (width * height * 3)
    }

    /// The frames as a model's input `[1, count, height, width, 3]` in [-1, 1] (`x / 127.5 - 1`) on `backend`, in
    /// `dtype`: the bytes travel and are converted where the model runs (a quarter of float32's upload, no host pass).
    public func modelInput(on backend: any Backend, dtype: DType) throws -> Tensor {
        let bytes = try pixels.withUnsafeBytes { try backend.upload($0, shape: [1, count, height, width, 3], dtype: .uint8) }
        return try backend.affine(try backend.cast(bytes, to: dtype), scale: 1 / 127.5, bias: -1)
    }

    /// The bytes of frame `i`.
    public func frame(_ i: Int) -> ArraySlice<UInt8> {
        pixels[(i * frameBytes)..<((i + 1) * frameBytes)]
    }

    /// Frames from a decoder's output `[1, T, H, W, 3]` or `[T, H, W, 3]` with values in [-1, 1]:
    /// clamp(x, -1, 1) * 0.5 + 0.5, scaled to 0...255 and rounded to nearest (LongLive's
    /// torchvision writer truncates instead; the difference is at most one level).
    public init(modelOutput t: Tensor) throws {
        let dims = t.shape.dims
        switch dims.count {
        case 5 where dims[0] == 1 && dims[4] == 3, 4 where dims[3] == 3: break
        default:
            throw ReelError.invalidArgument(op: "RGBFrames", message: "expected frames [1, T, H, W, 3] or [T, H, W, 3], got \(t.shape)")
        }
        let h = dims[dims.count - 3], w = dims[dims.count - 2]
        // Converted where the frames are (on a GPU: one download of a byte a channel).
        let bytes = try t.backend.downloadBytes(try t.backend.rgb8(t))
        try self.init(width: w, height: h, pixels: bytes)
    }
}
