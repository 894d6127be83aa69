import Foundation
import Testing
import ReelMedia
@testable import ReelServer

@Suite struct JPEGEncoderTests {
    /// A smooth test card with sharp edges, 72x40 (not a multiple of 16: edge MCUs are padded).
    static func card(width: Int = 72, height: Int = 40) throws -> RGBFrames {
        var pixels: [UInt8] = []
        for y in 0..<height {
            for x in 0..<width {
                let inBox = x > width / 3 && x < 2 * width / 3 && y > height / 4 && y < 3 * height / 4
                pixels += inBox ? [230, 40, 40] : [UInt8(x * 255 / width), UInt8(y * 255 / height), 128]
            }
        }
        return try RGBFrames(width: width, height: height, pixels: pixels)
    }

    @Test func huffmanTablesHaveTheirSymbols() {
        for spec in [HuffmanSpec.dcLuma, .dcChroma, .acLuma, .acChroma] {
            #expect(spec.bits.reduce(0) { $0 + Int($1) } == spec.values.count)
        }
        #expect(Set(JPEGEncoder.zigzag).count == 64)
    }

    @Test func markersAndSize() throws {
        let jpeg = try JPEGEncoder(quality: 80).encode(try Self.card(), frame: 0)
        #expect(Array(jpeg.prefix(2)) == [0xFF, 0xD8])
        #expect(Array(jpeg.suffix(2)) == [0xFF, 0xD9])
        // SOF0 carries height then width.
        let sof = try #require((0..<jpeg.count - 1).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        #expect(Int(jpeg[sof + 5]) << 8 | Int(jpeg[sof + 6]) == 40)
        #expect(Int(jpeg[sof + 7]) << 8 | Int(jpeg[sof + 8]) == 72)
        #expect(throws: (any Error).self) { try JPEGEncoder(quality: 0) }
    }

    /// ffmpeg's decoder reads our file back close to the original. For this card (hard colour edges,
    /// which 4:2:0 chroma blurs) libjpeg through PIL gets 30.1 dB at quality 90 and 28.3 dB at 50.
    @Test func ffmpegDecodesItFaithfully() throws {
        guard let ffmpeg = FFmpegSink.findFFmpeg() else { return }
        let card = try Self.card()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("reel-jpeg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (quality, minimumPSNR) in [(90, 28.5), (50, 26.5)] {
            let input = dir.appendingPathComponent("q\(quality).jpg"), output = dir.appendingPathComponent("q\(quality).rgb")
            try Data(try JPEGEncoder(quality: quality).encode(card, frame: 0)).write(to: input)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: ffmpeg)
            p.arguments = ["-hide_banner", "-loglevel", "error", "-y", "-i", input.path, "-f", "rawvideo", "-pix_fmt", "rgb24", output.path]
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
            let decoded = [UInt8](try Data(contentsOf: output))
            #expect(decoded.count == card.pixels.count)
            guard decoded.count == card.pixels.count else { continue }
            let mse = zip(decoded, card.pixels).reduce(0.0) { $0 + pow(Double($1.0) - Double($1.1), 2) } / Double(decoded.count)
            let psnr = 10 * log10(255 * 255 / max(mse, 1e-9))
            #expect(psnr > minimumPSNR, "quality \(quality): PSNR \(psnr) dB")
        }
    }

    @Test func frameMessagesRoundTrip() {
        let message = FrameMessage.encode(block: 7, frame: 70_000, promptIndex: 3, jpeg: [0xFF, 0xD8, 1, 2])
        let decoded = FrameMessage.decode(message)
        #expect(decoded?.block == 7 && decoded?.frame == 70_000 && decoded?.promptIndex == 3)
        #expect(decoded.map { Array($0.jpeg) } == [0xFF, 0xD8, 1, 2])
        #expect(FrameMessage.decode([1, 2, 3]) == nil)
    }
}
