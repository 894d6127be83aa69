import ReelCore

/// Which noise a StreamDiffusionV2 generator asks for.
public enum StreamNoiseDraw: Sendable, Equatable {
    /// The noise mixed into block `block`'s input latents (`inference.py:176`; the first block is 0).
    case input(block: Int)
    /// The noise that re-noises level `level` after the forward of block `block`'s call
    /// (`causal_stream_inference.py:290`; the first block's steps: `:182`).
    case renoise(block: Int, level: Int)
}

/// Where the StreamDiffusionV2 generator's Gaussian noise comes from. The reference draws every one with
/// `torch.randn_like`, in call order: a block's input noise, then one re-noise per level 0 ..< N-1.
public protocol StreamNoiseSource: AnyObject {
    /// Fresh N(0, 1) noise `[frames, H, W, C]` for `draw`.
    func draw(_ draw: StreamNoiseDraw, frames: Int, shape: (h: Int, w: Int, c: Int), on backend: any Backend) throws -> Tensor
}

/// Noise from the counter-based Philox stream, a separate stream per draw: the same on every backend.
public final class PhiloxStreamNoise: StreamNoiseSource {
    public let seed: UInt64
    public init(seed: UInt64) { self.seed = seed }

    public func draw(_ draw: StreamNoiseDraw, frames: Int, shape: (h: Int, w: Int, c: Int),
                     on backend: any Backend) throws -> Tensor {
        let key: UInt64
        switch draw {
        case .input(let b): key = UInt64(b) << 8
        case .renoise(let b, let level): key = UInt64(b) << 8 | UInt64(1 + (level & 0x7F))
        }
        return try backend.randomNormal([frames, shape.h, shape.w, shape.c], seed: splitMix(seed ^ splitMix(key)),
                                        offset: 0, dtype: .f32)
    }
}

/// The reference's draws replayed in call order (a parity fixture's `draw.<i>`): each given as
/// `[..., C, H, W]` channels first, handed out channel-last whatever the draw's identity, checked by size.
public final class RecordedStreamNoise: StreamNoiseSource {
    let draws: [[Float]]
    let chw: (c: Int, h: Int, w: Int)
    /// Draws handed out so far.
    public private(set) var used = 0

    public init(draws: [Tensor]) throws {
        guard let first = draws.first, first.rank >= 3 else {
            throw ReelError.input("recorded noise needs at least one draw of [..., C, H, W]")
        }
        let dims = first.shape.dims.suffix(3)
        chw = (dims[dims.startIndex], dims[dims.startIndex + 1], dims[dims.startIndex + 2])
        for (i, d) in draws.enumerated() where Array(d.shape.dims.suffix(3)) != Array(dims) {
            throw ReelError.input("recorded draw \(i) is \(d.shape), not [..., \(chw.c), \(chw.h), \(chw.w)]")
        }
        self.draws = try draws.map { try $0.backend.cast($0, to: .f32).toFloats() }
    }

    public func draw(_ draw: StreamNoiseDraw, frames: Int, shape: (h: Int, w: Int, c: Int),
                     on backend: any Backend) throws -> Tensor {
        guard shape.h == chw.h, shape.w == chw.w, shape.c == chw.c else {
            throw ReelError.input("recorded noise is \(chw.c)x\(chw.h)x\(chw.w) per frame, the generator needs "
                                  + "\(shape.c)x\(shape.h)x\(shape.w)")
        }
        guard used < draws.count else {
            throw ReelError.input("recorded noise has \(draws.count) draws; \(draw) asked for one more")
        }
        let values = draws[used], perFrame = chw.c * chw.h * chw.w
        guard values.count == frames * perFrame else {
            throw ReelError.input("recorded draw \(used) has \(values.count / perFrame) frames; \(draw) needs \(frames)")
        }
        used += 1
        let t = try backend.tensor(values, shape: [frames, chw.c, chw.h, chw.w])
        return try backend.permute(t, [0, 2, 3, 1])
    }
}
