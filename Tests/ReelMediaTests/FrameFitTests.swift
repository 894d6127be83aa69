import ReelCore
@testable import ReelMedia
import Testing

@Suite struct FrameFitTests {
    @Test func coverGeometry() {
        // 16:9 into 832x480 (1.73): the height sets the scale, 853 wide, 10 cropped on the left.
        #expect(FrameFit.cover(width: 1920, height: 1080, targetWidth: 832, targetHeight: 480)
            == .init(scaledWidth: 853, scaledHeight: 480, cropX: 10, cropY: 0))
        // Portrait into landscape: the width sets it, the middle rows are kept.
        #expect(FrameFit.cover(width: 480, height: 832, targetWidth: 832, targetHeight: 480)
            == .init(scaledWidth: 832, scaledHeight: 1442, cropX: 0, cropY: 481))
        #expect(FrameFit.cover(width: 0, height: 0, targetWidth: 4, targetHeight: 2).scaledWidth == 4)   // no trap
        // Same aspect: no crop.
        #expect(FrameFit.cover(width: 416, height: 240, targetWidth: 832, targetHeight: 480)
            == .init(scaledWidth: 832, scaledHeight: 480, cropX: 0, cropY: 0))
    }

    static func frame(_ w: Int, _ h: Int, _ value: (Int, Int) -> Int) throws -> RGBFrames {
        try RGBFrames(width: w, height: h, pixels: (0..<(w * h)).flatMap { i in
            let v = UInt8(value(i % w, i / w))
            return [v, v, 255 - v]
        })
    }

    static func channel0(_ f: RGBFrames) -> [Int] {
        stride(from: 0, to: f.pixels.count, by: 3).map { Int(f.pixels[$0]) }
    }

    @Test func shrinkAveragesArea() throws {
        let src = try Self.frame(4, 4) { x, y in (x / 2 + 2 * (y / 2)) * 40 + (x % 2) * 4 + (y % 2) * 8 }
        let out = try FrameFit.cover(src, width: 2, height: 2)
        #expect(Self.channel0(out) == [6, 46, 86, 126])    // each 2x2 block's mean: base + (0+4+8+12)/4
        #expect(out.pixels[2] == 255 - 6)
        // 3 -> 2 pixels: each output covers 1.5 source pixels, the middle one split in half.
        let rows = try Self.frame(3, 3) { x, _ in [0, 30, 90][x] }
        #expect(Self.channel0(try FrameFit.cover(rows, width: 2, height: 2)) == [10, 70, 10, 70])
    }

    @Test func enlargeIsBilinear() throws {
        let row = try Self.frame(2, 1) { x, _ in x * 100 }
        // Centres at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped) in the source.
        let out = try FrameFit.cover(row, width: 4, height: 2)
        #expect(Self.channel0(out) == [0, 25, 75, 100, 0, 25, 75, 100])
    }

    @Test func cropKeepsTheCentre() throws {
        let src = try Self.frame(6, 2) { x, y in x * 10 + y }
        #expect(Self.channel0(try FrameFit.cover(src, width: 2, height: 2)) == [20, 30, 21, 31])
        // Same size: untouched.
        #expect(try FrameFit.cover(src, width: 6, height: 2) == src)
        #expect(throws: ReelError.self) { try FrameFit.cover(src, width: 0, height: 2) }
    }

    @Test func tapWeightsSumToOne() {
        for (n, m) in [(1920, 853), (7, 3), (3, 7), (100, 101), (5, 5), (1, 9)] {
            for taps in FrameFit.taps(source: n, scaled: m, offset: 0, count: m) {
                #expect(abs(taps.reduce(0) { $0 + $1.1 } - 1) < 1e-5)
                #expect(taps.allSatisfy { $0.0 >= 0 && $0.0 < n })
            }
        }
    }

    @Test func frameTiming() throws {
        let r16 = try FrameRate(16), r8 = try FrameRate(8), r24 = try FrameRate(24)
        func map(_ input: FrameRate, _ output: FrameRate, _ n: Int) -> [Int] {
            (0..<n).map { FrameTiming.inputFrame(forOutputFrame: $0, input: input, output: output) }
        }
        #expect(map(r16, r16, 5) == [0, 1, 2, 3, 4])
        #expect(map(r8, r16, 6) == [0, 0, 1, 1, 2, 2])        // slower input: each frame twice
        #expect(map(r24, r16, 5) == [0, 1, 3, 4, 6])          // faster input: every third dropped
        let ntsc = try FrameRate(30000, 1001), r30 = try FrameRate(30)
        #expect(FrameTiming.inputFrame(forOutputFrame: 1000, input: ntsc, output: r30) == 999)
        #expect(FrameTiming.inputFrame(forOutputFrame: 1001, input: ntsc, output: r30) == 1000)
        #expect(FrameTiming.inputFrame(forOutputFrame: Int.max / 2, input: r24, output: r16) > 0)   // no overflow trap
        #expect(try ntsc.numerator == 30000 && FrameRate(32, 2).numerator == 16)
        #expect(throws: ReelError.self) { try FrameRate(0, 1) }
    }

    @Test func fittedInputResizesAndRetimes() throws {
        let frames = try (0..<4).map { try solidFrame(width: 8, height: 4, [UInt8($0 * 10), 0, 0]) }
        let slow = MemoryInput(frames, rate: try FrameRate(8))
        let fitted = try FittedInput(slow, width: 2, height: 2, frameRate: try FrameRate(16))
        var out: [UInt8] = []
        while let f = try fitted.nextFrame() {
            #expect(f.width == 2 && f.height == 2 && f.count == 1)
            out.append(f.pixels[0])
        }
        #expect(out == [0, 0, 10, 10, 20, 20, 30, 30])
        #expect(fitted.framesProduced == 8)

        let fast = MemoryInput(frames, rate: try FrameRate(32))
        let dropped = try FittedInput(fast, width: 8, height: 4, frameRate: try FrameRate(16))
        var kept: [UInt8] = []
        while let f = try dropped.nextFrame() { kept.append(f.pixels[0]) }
        #expect(kept == [0, 20])

        let unknown = MemoryInput(frames, rate: nil)   // no rate: one output frame per input frame
        let passed = try FittedInput(unknown, width: 4, height: 4, frameRate: try FrameRate(16))
        var n = 0
        while try passed.nextFrame() != nil { n += 1 }
        #expect(n == 4)
    }
}
