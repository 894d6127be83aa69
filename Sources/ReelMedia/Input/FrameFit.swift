import ReelCore

/// Fitting frames to the size the model generates: scale to cover the target, then crop the centre.
///
/// The frame is scaled by `s = max(W / w, H / h)`, so it covers `W x H` with its aspect ratio kept; the
/// scaled size is rounded to whole pixels (the side that sets `s` is exact), and the middle `W x H` is kept
/// (an odd excess leaves the extra pixel on the right / bottom). Resampling is separable, per axis:
/// an axis that shrinks averages the source area each output pixel covers (a box filter with fractional
/// edge weights, so no source pixel is skipped); an axis that grows samples bilinearly at pixel centres
/// (edges clamped); an axis that keeps its size is copied. Results are rounded to nearest.
public enum FrameFit {
    /// Where the target lies in the scaled frame.
    public struct Cover: Sendable, Equatable {
        /// Size the whole frame is scaled to (at least the target on both sides).
        public let scaledWidth: Int, scaledHeight: Int
        /// Top-left corner of the target inside the scaled frame.
        public let cropX: Int, cropY: Int
    }

    /// The cover geometry taking a `width x height` frame to `targetWidth x targetHeight`.
    /// Sizes below 1 are taken as 1.
    public static func cover(width: Int, height: Int, targetWidth: Int, targetHeight: Int) -> Cover {
        let (width, height) = (max(1, width), max(1, height))
        let (targetWidth, targetHeight) = (max(1, targetWidth), max(1, targetHeight))
        let sw: Int, sh: Int
        if targetWidth * height >= targetHeight * width {   // the width sets the scale
            sw = targetWidth
            sh = max(targetHeight, (2 * height * targetWidth + width) / (2 * width))
        } else {
            sh = targetHeight
            sw = max(targetWidth, (2 * width * targetHeight + height) / (2 * height))
        }
        return Cover(scaledWidth: sw, scaledHeight: sh, cropX: (sw - targetWidth) / 2, cropY: (sh - targetHeight) / 2)
    }

    /// Every frame of `frames` scaled to cover `width x height` and centre-cropped to it.
    public static func cover(_ frames: RGBFrames, width: Int, height: Int) throws -> RGBFrames {
        guard width > 0, height > 0, width * height <= Y4MHeader.maxPixels else {
            throw ReelError.invalidArgument(op: "FrameFit", message: "target size \(width)x\(height) is not valid")
        }
        if frames.width == width && frames.height == height { return frames }
        let g = cover(width: frames.width, height: frames.height, targetWidth: width, targetHeight: height)
        let xs = taps(source: frames.width, scaled: g.scaledWidth, offset: g.cropX, count: width)
        let ys = taps(source: frames.height, scaled: g.scaledHeight, offset: g.cropY, count: height)
        var out = [UInt8](repeating: 0, count: frames.count * width * height * 3)
        var rows = [Float](repeating: 0, count: frames.height * width * 3)   // [h, W, 3], after the x pass
        for f in 0..<frames.count {
            let src = frames.frame(f)
            src.withUnsafeBufferPointer { s in
                for y in 0..<frames.height {
                    for (x, tap) in xs.enumerated() {
                        var acc: (Float, Float, Float) = (0, 0, 0)
                        for (i, w) in tap {
                            let p = 3 * (y * frames.width + i)
                            acc.0 += w * Float(s[p]); acc.1 += w * Float(s[p + 1]); acc.2 += w * Float(s[p + 2])
                        }
                        let o = 3 * (y * width + x)
                        rows[o] = acc.0; rows[o + 1] = acc.1; rows[o + 2] = acc.2
                    }
                }
            }
            let base = f * width * height * 3
            for (y, tap) in ys.enumerated() {
                for x in 0..<(width * 3) {
                    var acc: Float = 0
                    for (j, w) in tap { acc += w * rows[j * width * 3 + x] }
                    out[base + y * width * 3 + x] = UInt8(max(0, min(255, acc.rounded())))
                }
            }
        }
        return try RGBFrames(width: width, height: height, pixels: out)
    }

    /// For each output pixel along one axis, the source pixels and weights (summing to 1) it takes.
    static func taps(source n: Int, scaled m: Int, offset: Int, count: Int) -> [[(Int, Float)]] {
        (0..<count).map { j in
            let k = j + offset   // index in the scaled axis
            if m == n { return [(k, 1)] }
            let scale = Double(n) / Double(m)   // source pixels per scaled pixel
            if m < n {
                let lo = Double(k) * scale, hi = Double(k + 1) * scale
                var taps: [(Int, Float)] = []
                var i = Int(lo.rounded(.down))
                while Double(i) < hi, i < n {
                    let overlap = min(hi, Double(i + 1)) - max(lo, Double(i))
                    if overlap > 1e-9 { taps.append((i, Float(overlap / scale))) }
                    i += 1
                }
                return taps
            }
            let c = min(max((Double(k) + 0.5) * scale - 0.5, 0), Double(n - 1))
            let i0 = Int(c.rounded(.down)), t = Float(c - Double(i0))
            return t == 0 ? [(i0, Float(1))] : [(i0, 1 - t), (min(i0 + 1, n - 1), t)]
        }
    }
}
