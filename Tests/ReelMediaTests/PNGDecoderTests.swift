import Foundation
import ReelCore
@testable import ReelMedia
import Testing

@Suite struct InflateTests {
    /// A zlib stream with a dynamic-Huffman block and a match 2000 bytes back, made by Python's zlib
    /// (level 9) from the LCG text below; Reel's own encoder never writes dynamic blocks.
    static let dynamicStream = [
        "78daed55d975e53008fda70a5a63ebbf85dc454e13c9e48c9f2d230477c155555795d579d55dd7555d81d5cac033ffc5252e",
        "dd08e1a5ee2ab3b6193fdaab38dcc6f2462f7af19b81b0eca9492e6bfd188934d9dc8907449ede3a06ef766b2f1487bf0dec",
        "ef71da17d883753c6c6ac38ddad8ed5772e5e1d89e441578d76c68dbc5215bbc5bc431138f0c5513780a1585638149e209cf",
        "c93ad0c3b2499dd877e8249a2b3aa194e72b72b034c92e51554e947ac0314c8d80cb69e7c20b941fba4fb51c82df9139c4a6",
        "8e38865acf7cdded54bf5a04014e9a539e611ba8760c1003f2953dbe7087918b8c2c53822e5babd5c2874cd5ec68b5f7a559",
        "537cbe60e15cc70800111556039b3d3336207486bd6c888620a431520f693f9c327cc3ee672d22024e5a2642998469f42096",
        "3c1581ca0f38f64a689d8350a8a4e5937533e2becd10ea4431d0f3e0ff0e695c9c17944947805a3486069550b246f56e9870",
        "71e384a5d6643b8d20a3d9f3aa26c9a5497d88e66015c1cc1b291874ae896a754a698f7ac2af099efe1c266a9047065dc166",
        "a58870877017ef47548ba627e955c89862d595cc65d75d3df5eebc63a4f8e361eede3112b2e04baa6443058a535e194cfa94",
        "8415a6050026d1f30a2b2420bc3c63042b02252a8c0ae60b953ccefcf98599286ecf2aea655e37f00838c4a11c57c14cc171",
        "02e107679634bf163fa3ba1eaadb92d0c09e0a51bbf2af8a6ecf8bd0dc11a6900bb9ed0745b8c2b1e7a9faf104e33614d42d",
        "cf967ca0208c431e341fd6f400144567a1f3218c7417753894453f637902d37ee35aca962fa9aefae9e3975cf4df9a6334de",
        "219b6683bd40b03948a8bf1ec9a8addc78d0abb6240663ef4821f21a09ff66f0dc03873663e8c95916410a5a79403fe3b9bc",
        "9e094c9d9a65a15ec1c0e473ee783ab4189378b09b83c25e3c4b97631d72e2f84d0f77b59574fcb52732aab3641e49106673",
        "8c12657f89785ec8d1c38c33df080762e341c875e142e83176ef8dd16b7f3cac6001c1546b6b455b69ae9696e629a8c663c1",
        "9a2466f97d86e6155482981f257e7908f2da8a568b191a59ed4d487983a31b5b24e4ffeff95ffb9eff005d9457ab",
    ].joined().hexBytes

    static var dynamicSource: [UInt8] {
        let t = Array("aaaaaaaabbbbccde \n".utf8)
        var s: UInt32 = 12345
        var d: [UInt8] = []
        for _ in 0..<2000 {
            s = s &* 1_103_515_245 &+ 12345
            d.append(t[Int(s >> 16) % 18])
        }
        return d + d.prefix(500)
    }

    @Test func dynamicHuffmanBlock() throws {
        #expect(Self.dynamicStream[2] >> 1 & 3 == 2)   // BTYPE of the first block: dynamic
        #expect(try Inflate.zlib(Self.dynamicStream, limit: 1 << 20) == Self.dynamicSource)
    }

    @Test(arguments: [0, 1, 300, 70000])
    func readsReelsEncoder(size: Int) throws {
        var rng = TestBytes(state: UInt64(size))
        let data = (0..<size).map { i in i % 500 < 250 ? UInt8(i % 5) : UInt8(truncatingIfNeeded: rng.next() >> 40) }
        #expect(try Inflate.zlib(Deflate.zlib(data), limit: size) == data)
    }

    @Test func storedBlock() throws {
        let data: [UInt8] = [1, 2, 3, 250]
        // Header, BFINAL=1 BTYPE=00, LEN=4, NLEN=~4, the bytes, Adler-32.
        var z: [UInt8] = [0x78, 0x01, 0x01, 0x04, 0x00, 0xFB, 0xFF] + data
        z += PNGEncoder.bigEndian(Adler32.checksum(data))
        #expect(try Inflate.zlib(z, limit: 4) == data)
    }

    @Test func corruptStreamsThrow() throws {
        let good = Deflate.zlib(Array(repeating: 7, count: 1000) + Array(0...255))
        var badAdler = good
        badAdler[badAdler.count - 1] ^= 1
        #expect(throws: Inflate.Failure.self) { try Inflate.zlib(badAdler, limit: 1 << 20) }
        #expect(throws: Inflate.Failure.self) { try Inflate.zlib(Array(good.dropLast(6)), limit: 1 << 20) }
        #expect(throws: Inflate.Failure.self) { try Inflate.zlib([0x78, 0x02] + good.dropFirst(2), limit: 1 << 20) }
        // More output than allowed: a bomb is cut off at the limit.
        #expect(throws: Inflate.Failure.self) { try Inflate.zlib(good, limit: 100) }
        var bad3 = good
        bad3[2] |= 0x06   // BTYPE 11
        #expect(throws: Inflate.Failure.self) { try Inflate.zlib(bad3, limit: 1 << 20) }
    }

    /// Random bytes after a valid header must end in an error (or, rarely, a tiny valid stream), never
    /// a crash or a hang.
    @Test func randomStreamsNeverCrash() {
        var rng = TestBytes(state: 42)
        var failures = 0
        for n in 0..<400 {
            let z: [UInt8] = [0x78, 0x9C] + rng.bytes(1 + n % 200)
            do { _ = try Inflate.zlib(z, limit: 1 << 16) } catch { failures += 1 }
        }
        #expect(failures >= 390)
    }
}

@Suite struct PNGDecoderTests {
    /// Pixels of a test pattern, in 0..<levels.
    static func pattern(_ x: Int, _ y: Int, _ c: Int, levels: Int) -> Int {
        (x * 37 + y * 11 + c * 101 + x * y) % levels
    }

    @Test(arguments: [(1, 1), (7, 5), (33, 17)])
    func roundTripsPNGEncoder(size: (Int, Int)) throws {
        let (w, h) = size
        let rgb = (0..<(w * h * 3)).map { UInt8(Self.pattern($0 / 3 % w, $0 / 3 / w, $0 % 3, levels: 256)) }
        let png = try PNGEncoder.encode(width: w, height: h, rgb: rgb[...])
        let frame = try PNGDecoder.decode(png, source: "mem.png")
        #expect(frame.width == w && frame.height == h && frame.count == 1)
        #expect(frame.pixels == rgb)
    }

    /// Every colour type and bit depth the standard allows, every filter, with and without Adam7,
    /// against the pixels the file was built from.
    @Test(arguments: [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8),
                      (4, 8), (4, 16), (6, 8), (6, 16)], [false, true])
    func colourTypesAndDepths(type: (Int, Int), interlaced: Bool) throws {
        let (colorType, depth) = type
        let w = 13, h = 11   // not a multiple of 8: partial Adam7 passes
        let levels = colorType == 3 ? min(1 << depth, 7) : 1 << depth
        var palette: [UInt8] = []
        for i in 0..<(colorType == 3 ? levels : 0) { palette += [UInt8(i * 30), UInt8(255 - i * 20), UInt8(i * 7)] }
        let channels = [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][colorType]!
        let png = TestPNG(width: w, height: h, bitDepth: depth, colorType: colorType, interlaced: interlaced,
                          palette: colorType == 3 ? palette : []) { x, y in
            (0..<channels).map { Self.pattern(x, y, $0, levels: levels) }
        }
        let frame = try PNGDecoder.decode(png.bytes(), source: "t.png")
        for y in 0..<h {
            for x in 0..<w {
                let s = (0..<channels).map { Self.pattern(x, y, $0, levels: levels) }
                let to8 = { (v: Int) in depth == 16 ? (v * 255 + 32767) / 65535 : v * 255 / (levels - 1) }
                var rgb: [Int]
                switch colorType {
                case 0: rgb = [to8(s[0]), to8(s[0]), to8(s[0])]
                case 2: rgb = s.map(to8)
                case 3: rgb = (0..<3).map { Int(palette[3 * s[0] + $0]) }
                case 4: rgb = [to8(s[0]), to8(s[0]), to8(s[0])].map { ($0 * to8(s[1]) + 127) / 255 }
                default: rgb = s[0..<3].map(to8).map { ($0 * to8(s[3]) + 127) / 255 }
                }
                let i = 3 * (y * w + x)
                #expect(frame.pixels[i..<(i + 3)].map(Int.init) == rgb, "pixel (\(x), \(y))")
                if frame.pixels[i..<(i + 3)].map(Int.init) != rgb { return }
            }
        }
    }

    @Test func eachFilterAlone() throws {
        for filter in 0..<5 {
            let png = TestPNG(width: 9, height: 4, bitDepth: 8, colorType: 2, filter: filter) { x, y in
                [x * 20, y * 50, (x + y) * 9]
            }
            let frame = try PNGDecoder.decode(png.bytes(), source: "f.png")
            #expect(Array(frame.pixels[(3 * 10)..<(3 * 11)]) == [20, 50, 18], "filter \(filter)")
        }
    }

    @Test func transparencyChunksCompositeOverBlack() throws {
        // Palette with alpha per entry: entry 1 is half transparent.
        let pal = TestPNG(width: 2, height: 1, bitDepth: 8, colorType: 3, palette: [200, 100, 50, 200, 100, 50],
                          transparency: [255, 128]) { x, _ in [x] }
        #expect(try PNGDecoder.decode(pal.bytes(), source: "p.png").pixels == [200, 100, 50, 100, 50, 25])
        // Gray key colour 3 (of 4-bit samples) is fully transparent.
        let gray = TestPNG(width: 2, height: 1, bitDepth: 4, colorType: 0, transparency: [0, 3]) { x, _ in [3 + x] }
        #expect(try PNGDecoder.decode(gray.bytes(), source: "g.png").pixels == [0, 0, 0, 68, 68, 68])
        let rgb = TestPNG(width: 2, height: 1, bitDepth: 8, colorType: 2, transparency: [0, 1, 0, 2, 0, 3]) { x, _ in
            [1, 2, 3 + x]
        }
        #expect(try PNGDecoder.decode(rgb.bytes(), source: "c.png").pixels == [0, 0, 0, 1, 2, 4])
    }

    @Test func badFilesThrowNamingTheFile() throws {
        let good = try PNGEncoder.encode(width: 8, height: 8, rgb: [UInt8](repeating: 90, count: 192)[...])
        func expectFailure(_ bytes: [UInt8], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try PNGDecoder.decode(bytes, source: "bad.png")
                Issue.record("decoded a bad file (\(fragment))", sourceLocation: sourceLocation)
            } catch let error as ReelError {
                guard case let .badFile(path, message) = error else {
                    Issue.record("\(error)", sourceLocation: sourceLocation)
                    return
                }
                #expect(path == "bad.png", sourceLocation: sourceLocation)
                #expect(message.contains(fragment), "\(message)", sourceLocation: sourceLocation)
            } catch {
                Issue.record("untyped error \(error)", sourceLocation: sourceLocation)
            }
        }
        expectFailure([], "signature")
        expectFailure(Array(good.prefix(40)), "truncated")
        for cut in [9, 20, 33, good.count - 13, good.count - 1] { expectFailure(Array(good.prefix(cut)), "truncated") }
        var crc = good
        crc[20] ^= 0x40   // inside IHDR's data
        expectFailure(crc, "CRC")
        var data = good
        data[45] ^= 0x01  // inside IDAT's data, with its CRC fixed up: the zlib stream is what breaks
        let idatLength = PNGDecoder.be32(data, 33)
        data.replaceSubrange((41 + idatLength)..<(45 + idatLength),
                             with: PNGEncoder.bigEndian(CRC32.checksum(data[37..<(41 + idatLength)])))
        expectFailure(data, "image data")
        func headerOnly(_ w: UInt32, _ h: UInt32, depth: UInt8, type: UInt8) -> [UInt8] {
            var file = PNGEncoder.signature
            let ihdr = PNGEncoder.bigEndian(w) + PNGEncoder.bigEndian(h) + [depth, type, 0, 0, 0]
            TestPNG.chunk("IHDR", ihdr, into: &file)
            TestPNG.chunk("IEND", [], into: &file)
            return file
        }
        expectFailure(headerOnly(100_000, 100_000, depth: 8, type: 2), "outside")
        expectFailure(headerOnly(0, 5, depth: 8, type: 2), "outside")
        expectFailure(headerOnly(5, 5, depth: 4, type: 2), "bit depth 4 is invalid")
        expectFailure(headerOnly(5, 5, depth: 8, type: 5), "colour type 5")
        expectFailure(headerOnly(5, 5, depth: 8, type: 2), "image data")   // no IDAT
        let noPalette = TestPNG(width: 2, height: 2, bitDepth: 8, colorType: 3) { _, _ in [0] }
        expectFailure(noPalette.bytes(), "without a palette")
        let badIndex = TestPNG(width: 2, height: 2, bitDepth: 8, colorType: 3, palette: [1, 2, 3]) { x, _ in [x] }
        expectFailure(badIndex.bytes(), "palette index 1")
        let badFilter = TestPNG(width: 2, height: 2, bitDepth: 8, colorType: 0, filter: 0) { _, _ in [0] }
        var scan = badFilter.scanlines()
        scan[0] = 7
        var file = PNGEncoder.signature
        TestPNG.chunk("IHDR", Array(badFilter.bytes()[16..<29]), into: &file)
        TestPNG.chunk("IDAT", Deflate.zlib(scan), into: &file)
        TestPNG.chunk("IEND", [], into: &file)
        expectFailure(file, "filter type 7")
    }

    /// Random bytes, and valid files with random bytes flipped, throw (or decode), never crash or hang.
    @Test func fuzzedInputsNeverCrash() throws {
        var rng = TestBytes(state: 7)
        let good = TestPNG(width: 20, height: 9, bitDepth: 8, colorType: 6, interlaced: true) { x, y in
            [x * 9, y * 20, 77, 200]
        }.bytes()
        #expect(try PNGDecoder.decode(good, source: "g.png").width == 20)
        for n in 0..<300 {
            var bytes = n % 3 == 0 ? PNGEncoder.signature + rng.bytes(n) : good
            if n % 3 != 0 {
                for _ in 0..<(1 + n % 4) { bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1 + rng.next() % 255) }
                // Every other time, fix the CRCs so the damage reaches the inflater and the filters.
                if n % 2 == 0 { bytes = Self.withFixedCRCs(bytes) }
            }
            _ = try? PNGDecoder.decode(bytes, source: "fuzz.png")
        }
    }
}

extension PNGDecoderTests {
    /// `png` with each chunk's CRC recomputed (as far as the chunk lengths make sense).
    static func withFixedCRCs(_ png: [UInt8]) -> [UInt8] {
        var out = png, pos = 8
        while pos + 12 <= out.count {
            let length = PNGDecoder.be32(out, pos)
            guard length <= out.count, pos + 12 + length <= out.count else { break }
            out.replaceSubrange((pos + 8 + length)..<(pos + 12 + length),
                                with: PNGEncoder.bigEndian(CRC32.checksum(out[(pos + 4)..<(pos + 8 + length)])))
            pos += 12 + length
        }
        return out
    }
}

extension String {
    var hexBytes: [UInt8] {
        let chars = Array(utf8)
        return stride(from: 0, to: chars.count - 1, by: 2).map { i in
            UInt8(String(decoding: chars[i..<(i + 2)], as: UTF8.self), radix: 16)!
        }
    }
}
