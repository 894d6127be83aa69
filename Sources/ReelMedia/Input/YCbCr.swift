/// Y'CbCr -> RGB8 with the BT.601 matrix, the inverse of what `Y4MSink` writes.
///
/// Limited range (the default; Y 16...235, Cb/Cr 16...240), in 8.8 fixed point:
/// `R = 1.164 (Y-16) + 1.596 (Cr-128)`, `G = 1.164 (Y-16) - 0.392 (Cb-128) - 0.813 (Cr-128)`,
/// `B = 1.164 (Y-16) + 2.017 (Cb-128)`, rounded to nearest and clamped to 0...255.
/// Full range (`XCOLORRANGE=FULL`, JPEG's): `R = Y + 1.402 (Cr-128)`, `G = Y - 0.344 (Cb-128) - 0.714 (Cr-128)`,
/// `B = Y + 1.772 (Cb-128)`.
/// Subsampled chroma is upsampled by replication: each chroma sample colours the 2x2 (4:2:0) or 2x1 (4:2:2)
/// block of pixels it covers, whatever its siting.
enum YCbCr {
    static func rgb(planes: [UInt8], header: Y4MHeader) -> [UInt8] {
        let w = header.width, h = header.height
        let (cw, ch) = header.chromaSize
        let xShift = cw == w ? 0 : 1, yShift = ch == h ? 0 : 1
        // (luma scale, Cr->R, Cb->G, Cr->G, Cb->B) in 1/256, and the luma offset.
        let k = header.fullRange ? (256, 359, 88, 183, 454) : (298, 409, 100, 208, 516)
        let yOffset = header.fullRange ? 0 : 16
        var out = [UInt8](repeating: 0, count: w * h * 3)
        planes.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                let cb = w * h, cr = cb + cw * ch
                for y in 0..<h {
                    let cRow = (y >> yShift) * cw
                    for x in 0..<w {
                        let c = k.0 * (Int(p[y * w + x]) - yOffset) + 128
                        var d = 0, e = 0
                        if cw > 0 {
                            d = Int(p[cb + cRow + (x >> xShift)]) - 128
                            e = Int(p[cr + cRow + (x >> xShift)]) - 128
                        }
                        let i = 3 * (y * w + x)
                        o[i] = clamp8((c + k.1 * e) >> 8)
                        o[i + 1] = clamp8((c - k.2 * d - k.3 * e) >> 8)
                        o[i + 2] = clamp8((c + k.4 * d) >> 8)
                    }
                }
            }
        }
        return out
    }
}

@inline(__always) func clamp8(_ v: Int) -> UInt8 { UInt8(max(0, min(255, v))) }
