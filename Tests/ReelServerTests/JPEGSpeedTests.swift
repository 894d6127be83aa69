import Foundation
import Testing
import ReelCore
@testable import ReelMedia
import ReelIO
@testable import ReelServer

/// How fast 832x480 frames encode, JPEG (what the WebSocket sends) against PNG (ReelIO's encoder),
/// on a synthetic frame with smooth areas, edges and sensor-like noise. Prints the figures (a benchmark: no time is
/// asserted, timings on shared CI cores vary); what a time bound used to catch, an unoptimized build of the codecs,
/// is checked directly.
@Suite struct JPEGSpeedTests {
    static func frame(width: Int = 832, height: Int = 480) throws -> RGBFrames {
        var rng = SystemRandomNumberGenerator()
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let sky = y < height / 2
                let cx = Double(x - width / 3), cy = Double(y - height / 2)
                let ball = cx * cx + cy * cy < 90 * 90
                var rgb: (Double, Double, Double) = ball ? (220, 60, 40) : sky ? (90 + Double(y) / 4, 140, 230) : (60, 120 + Double(x % 64), 50)
                let n = Double(Int(rng.next() % 13)) - 6
                rgb = (rgb.0 + n, rgb.1 + n, rgb.2 + n)
                let p = (y * width + x) * 3
                pixels[p] = UInt8(clamping: Int(rgb.0)); pixels[p + 1] = UInt8(clamping: Int(rgb.1)); pixels[p + 2] = UInt8(clamping: Int(rgb.2))
            }
        }
        return try RGBFrames(width: width, height: height, pixels: pixels)
    }

    @Test func jpegKeepsUpWith30FPSAt832x480() throws {
        let frame = try Self.frame()
        let clock = ContinuousClock()
        for quality in [80, 90] {
            let encoder = try JPEGEncoder(quality: quality)
            var bytes = 0
            // Best of several runs: other tests and builds share the cores.
            let times = (0..<8).map { _ in clock.measure { bytes = encoder.encode(frame, frame: 0).count } }
            let ms = times.min()!.seconds * 1000
            print(String(format: "JPEG q%d 832x480: %.1f ms/frame (%.0f FPS on one core), %d KB/frame, %.1f Mbit/s at 30 FPS",
                         quality, ms, 1000 / ms, bytes / 1024, Double(bytes) * 8 * 30 / 1e6))
        }
        #expect(JPEGEncoder.isOptimizedBuild, "ReelServer (the JPEG encoder) is compiled without optimization")
        let t = clock.measure { _ = try? PNGEncoder.encode(width: frame.width, height: frame.height, rgb: frame.frame(0)) }
        let png = try PNGEncoder.encode(width: frame.width, height: frame.height, rgb: frame.frame(0))
        print(String(format: "PNG 832x480: %.1f ms/frame, %d KB/frame, %.1f Mbit/s at 30 FPS",
                     t.seconds * 1000, png.count / 1024, Double(png.count) * 8 * 30 / 1e6))
    }

    /// How fast Reel's decoder reads a camera-sized frame (640x480, what the studio page sends): printed; ReelMedia
    /// is checked to be built with -O (as Package.swift asks, even in debug builds).
    @Test func decoderReadsACameraFrame() throws {
        let frame = try Self.frame(width: 640, height: 480)
        let jpeg = try JPEGEncoder(quality: 85).encode(frame, frame: 0)
        let clock = ContinuousClock()
        let ms = (0..<4).map { _ in clock.measure { _ = try? JPEGDecoder.decode(jpeg) } }.min()!.seconds * 1000
        print(String(format: "JPEG decode 640x480 q85 (%d KB): %.1f ms/frame", jpeg.count / 1024, ms))
        #expect(JPEGDecoder.isOptimizedBuild, "ReelMedia (the JPEG decoder) is compiled without optimization")
    }
}
