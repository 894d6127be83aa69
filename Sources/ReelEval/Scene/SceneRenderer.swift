import ReelMedia

/// Draws ground-truth frames the way the data set does (training/data/render.py): each pixel's object
/// coverage is clamp(0.5 - d, 0, 1) of the shape's signed distance d at the pixel centre (anti-aliased
/// edges, sub-pixel positions), distances wrap around the frame (a torus), and a two-tone background is
/// the top half in one colour and the bottom half in the other. The analysis is validated on these
/// frames, and `reel eval --reference` measures them as the ceiling a perfect model would reach.
public struct SceneRenderer: Sendable {
    public let frameSize: Int
    public init(frameSize: Int) { self.frameSize = frameSize }

    /// One frame, RGB bytes row by row.
    public func render(_ truth: FrameTruth) -> [UInt8] {
        let s = frameSize
        var pixels = [UInt8](repeating: 0, count: s * s * 3)
        let top = truth.scene.background.top.rgb, bottom = truth.scene.background.bottom.rgb
        let object = truth.scene.object
        let colour = object?.colour.rgb ?? top
        let half = Double(s) / 2
        pixels.withUnsafeMutableBufferPointer { out in
            for y in 0..<s {
                let bg = y < s / 2 ? top : bottom
                // Toroidal offset of the pixel centre from the object's centre.
                let dy = positiveRemainder(Double(y) + 0.5 - truth.centre.y + half, Double(s)) - half
                for x in 0..<s {
                    var cover = 0.0
                    if let object {
                        let dx = positiveRemainder(Double(x) + 0.5 - truth.centre.x + half, Double(s)) - half
                        cover = min(max(0.5 - object.shape.signedDistance(dx, dy, radius: truth.radius), 0), 1)
                    }
                    let o = (y * s + x) * 3
                    out[o] = blend(bg.r, colour.r, cover)
                    out[o + 1] = blend(bg.g, colour.g, cover)
                    out[o + 2] = blend(bg.b, colour.b, cover)
                }
            }
        }
        return pixels
    }

    /// Frames `range` of a timeline.
    public func render(_ timeline: SceneTimeline, frames range: Range<Int>) throws -> RGBFrames {
        var pixels: [UInt8] = []
        pixels.reserveCapacity(range.count * frameSize * frameSize * 3)
        for f in range { pixels += render(timeline.truth(at: f)) }
        return try RGBFrames(width: frameSize, height: frameSize, pixels: pixels)
    }

    private func blend(_ a: UInt8, _ b: UInt8, _ t: Double) -> UInt8 {
        UInt8((Double(a) * (1 - t) + Double(b) * t).rounded())
    }
}

extension Shape {
    /// Signed distance (pixels, negative inside) of the shape of half-extent r centred at the origin, at
    /// offset (dx, dy), y down. Polygons use the distance to their sides' lines (exact near the edges,
    /// which is all the anti-aliasing needs).
    public func signedDistance(_ dx: Double, _ dy: Double, radius r: Double) -> Double {
        let ax = abs(dx), ay = abs(dy)
        switch self {
        case .circle:
            return (dx * dx + dy * dy).squareRoot() - r
        case .square:
            return max(ax, ay) - r
        case .diamond:
            return (ax + ay - r) * (0.5 as Double).squareRoot()
        case .triangle:
            // Apex (0, -r), base corners (+-r, 0.8r): the sides rise 1.8 per unit across.
            let k = 1.8
            return max(dy - 0.8 * r, (k * ax - dy - r) / (k * k + 1).squareRoot())
        case .cross:
            let arm = 0.35 * r
            return min(max(ax - r, ay - arm), max(ax - arm, ay - r))
        }
    }
}
