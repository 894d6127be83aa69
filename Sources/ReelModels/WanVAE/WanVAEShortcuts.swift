import ReelCore

// Wan2.2's parameter-free pieces (Wan2.2 `wan/modules/vae2_2.py`), channel-last: activations are
// [N, T, H, W, C]. They are pure data movement (and a mean), so they run on any backend's layout ops.

/// Wan2.2's `AvgDown3D`, the shortcut around an encoder stage: each output cell is the mean of `group`
/// entries of the input block it covers (factorT frames x factorS x factorS pixels x C channels), the
/// block's entries ordered (c, t, h, w) and cut into `out` runs of `group`.
struct AvgDown3D {
    let cin: Int, cout: Int, factorT: Int, factorS: Int
    /// Off only in tests (a model without the shortcut).
    var enabled = true

    var factor: Int { factorT * factorS * factorS }
    var group: Int { cin * factor / cout }

    init(cin: Int, cout: Int, factorT: Int, factorS: Int) {
        precondition(cin * factorT * factorS * factorS % cout == 0, "AvgDown3D: \(cin) x factor not a multiple of \(cout)")
        self.cin = cin; self.cout = cout; self.factorT = factorT; self.factorS = factorS
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let b = x.backend
        var x = x
        // Wan pads the front of time with zeros up to a multiple of factorT (the stream's 1-frame first chunk).
        let padT = (factorT - x.shape[1] % factorT) % factorT
        if padT > 0 { x = try b.concat([try b.zeros(x.shape.replacing(axis: 1, with: padT), dtype: x.dtype), x], axis: 1) }
        let (n, t, h, w, c) = (x.shape[0], x.shape[1] / factorT, x.shape[2] / factorS, x.shape[3] / factorS, x.shape[4])
        if factor == 1 && group == 1 { return x }   // the identity (Wan2.2's last encoder stage)
        let blocks = try x.reshaped([n * t, factorT, h, factorS, w, factorS, c])
        let ordered = try b.permute(blocks, [0, 2, 4, 6, 1, 3, 5])            // [NT, h, w, C, ft, fs, fs]
        let groups = try ordered.reshaped([n * t * h * w * cout, group])
        // The mean as a sum of the group's columns times 1 / group (elementwise ops only; Wan: `x.mean(dim=2)`).
        var sum = try b.slice(groups, axis: 1, start: 0, length: 1)
        for g in 1..<group { sum = try b.add(sum, try b.slice(groups, axis: 1, start: g, length: 1)) }
        return try b.affine(sum, scale: 1 / Float(group), bias: 0).reshaped([n, t, h, w, cout])
    }
}

/// Wan2.2's `DupUp3D`, the shortcut around a decoder stage: the inverse arrangement of `AvgDown3D`, each
/// input channel repeated `repeats` times and the copies spread over the output block (factorT frames x
/// factorS x factorS pixels x out channels, ordered (c, t, h, w)). On a stream's first chunk Wan keeps only
/// the last of the factorT frames (as the stage's time upsampling skips chunk 0).
struct DupUp3D {
    let cin: Int, cout: Int, factorT: Int, factorS: Int
    /// Off only in tests (a model without the shortcut).
    var enabled = true

    var factor: Int { factorT * factorS * factorS }
    var repeats: Int { cout * factor / cin }

    init(cin: Int, cout: Int, factorT: Int, factorS: Int) {
        precondition(cout * factorT * factorS * factorS % cin == 0, "DupUp3D: \(cout) x factor not a multiple of \(cin)")
        self.cin = cin; self.cout = cout; self.factorT = factorT; self.factorS = factorS
    }

    func callAsFunction(_ x: Tensor, firstChunk: Bool) throws -> Tensor {
        let b = x.backend
        let (n, t, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        // repeat_interleave over channels as a broadcast add of zeros (the backends have no expand op).
        let zeros = try b.zeros([repeats], dtype: x.dtype)
        let copies = repeats == 1 ? x : try b.add(x.reshaped([n * t * h * w, cin, 1]), zeros)  // [.., Cin, r]
        let blocks = try copies.reshaped([n * t, h, w, cout, factorT, factorS, factorS])
        let spread = try b.permute(blocks, [0, 4, 1, 5, 2, 6, 3])              // [NT, ft, h, fs, w, fs, C]
        let y = try spread.reshaped([n, t * factorT, h * factorS, w * factorS, cout])
        guard firstChunk && factorT > 1 else { return y }
        return try b.slice(y, axis: 1, start: factorT - 1, length: y.shape[1] - factorT + 1)
    }
}

/// Wan2.2's `patchify` / `unpatchify` (`b c f (h q) (w r) <-> b (c r q) f h w`): a pixel's channel c at
/// offset (q, r) in its patch is channel (c * p + r) * p + q of the patch - note r (along W) before q.
enum Patchify {
    /// `[N, T, pH, pW, C]` -> `[N, T, H, W, C p p]`.
    static func pack(_ x: Tensor, patch p: Int) throws -> Tensor {
        guard p > 1 else { return x }
        let (n, t, h, w, c) = (x.shape[0], x.shape[1], x.shape[2] / p, x.shape[3] / p, x.shape[4])
        let cells = try x.reshaped([n * t, h, p, w, p, c])                     // [NT, h, q, w, r, c]
        return try x.backend.permute(cells, [0, 1, 3, 5, 4, 2]).reshaped([n, t, h, w, c * p * p])
    }

    /// PyTorch's `pixel_shuffle` (TAEHV's `patch_size`, taew2_2): `[N, T, H, W, C p p]` -> `[N, T, pH, pW, C]`, a
    /// pixel's channel c at offset (q, r) in its patch taken from channel (c * p + q) * p + r: q (along H) before r.
    static func pixelShuffle(_ x: Tensor, patch p: Int) throws -> Tensor { try spread(x, patch: p, heightOffsetFirst: true) }

    /// `[N, T, H, W, C p p]` -> `[N, T, pH, pW, C]`.
    static func unpack(_ x: Tensor, patch p: Int) throws -> Tensor { try spread(x, patch: p, heightOffsetFirst: false) }

    /// A cell's `C p p` channels spread over its `p x p` pixels: channel (c * p + a) * p + b goes to the pixel at H
    /// offset a and W offset b when `heightOffsetFirst` (`pixel_shuffle`), at W offset a and H offset b otherwise (Wan).
    private static func spread(_ x: Tensor, patch p: Int, heightOffsetFirst: Bool) throws -> Tensor {
        guard p > 1 else { return x }
        let (n, t, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4] / (p * p))
        let cells = try x.reshaped([n * t, h, w, c, p, p])                     // [NT, h, w, c, a, b]
        let order = heightOffsetFirst ? [0, 1, 4, 2, 5, 3] : [0, 1, 5, 2, 4, 3]  // -> [NT, h, (H offset), w, (W offset), c]
        return try x.backend.permute(cells, order).reshaped([n, t, h * p, w * p, c])
    }
}
