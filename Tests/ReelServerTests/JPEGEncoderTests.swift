import Foundation
import ReelCore
import Testing
@testable import ReelMedia
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
            p.waitForExit()
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

    /// Reel's encoder and Reel's decoder agree: the card comes back close to itself at every size (edge MCUs
    /// padded, 1x1 and odd sizes included) and quality, and the decoder reads exactly what ffmpeg reads from the
    /// same bytes (planes within a level, checked as `JPEGDecoderTests` does).
    @Test(arguments: [(72, 40, 90), (1, 1, 80), (17, 9, 50), (128, 128, 95), (33, 65, 10)])
    func decoderReadsTheEncodersOutput(width: Int, height: Int, quality: Int) throws {
        let card = try Self.card(width: width, height: height)
        let jpeg = try JPEGEncoder(quality: quality).encode(card, frame: 0)
        let back = try JPEGDecoder.decode(jpeg)
        #expect(back.width == width && back.height == height)
        var sum = 0
        for (a, b) in zip(back.pixels, card.pixels) { sum += abs(Int(a) - Int(b)) }
        let mean = Double(sum) / Double(card.pixels.count)
        print("JPEGEncoderTests: \(width)x\(height) q\(quality): mean error \(mean)")
        // The card's hard red box loses most to 4:2:0 and quantisation on tiny frames at low quality.
        let bound = quality >= 90 ? 4.0 : quality >= 50 ? 16.0 : 20.0
        #expect(mean < bound, "\(width)x\(height) q\(quality): mean error \(mean)")

        guard let ffmpeg = FFmpegSink.findFFmpeg() else { return }
        var parser = JPEGParser(data: jpeg, source: "card", maxPixels: 1 << 20)
        try parser.parse()
        var planes: [UInt8] = []
        for c in parser.components {
            let (fx, fy) = (parser.hmax / c.h, parser.vmax / c.v)
            let (cw, ch) = ((width + fx - 1) / fx, (height + fy - 1) / fy)
            for y in 0..<ch { planes += c.plane[(y * c.blocksWide * 8)..<(y * c.blocksWide * 8 + cw)] }
        }
        let path = NSTemporaryDirectory() + "reel-card-\(UUID().uuidString).jpg"
        try Data(jpeg).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ffmpeg)
        p.arguments = ["-hide_banner", "-loglevel", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "yuvj420p", "-"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let reference = [UInt8](out.fileHandleForReading.readDataToEndOfFile())
        p.waitForExit()
        #expect(reference.count == planes.count)
        let largest = zip(planes, reference).map { abs(Int($0) - Int($1)) }.max() ?? 0
        #expect(largest <= 2, "\(width)x\(height) q\(quality): planes differ from ffmpeg's by up to \(largest)")
    }
}
