import ReelCore

/// Where the generator's Gaussian noise comes from: the initial noise of every latent frame, and the
/// fresh noise LongLive draws (`torch.randn_like`) each time it re-noises a block between steps.
/// Parity runs replay the reference's draws from a file; normal runs use the seeded Philox stream.
public protocol NoiseSource: AnyObject {
    /// Initial noise of frames `start ..< start + count`, `[count, H, W, C]`.
    func initial(startFrame: Int, count: Int, shape: (h: Int, w: Int, c: Int), on backend: any Backend) throws -> Tensor
    /// The noise mixed in after step `step` of the block starting at `startFrame`, `[count, H, W, C]`.
    func renoise(startFrame: Int, step: Int, count: Int, shape: (h: Int, w: Int, c: Int), on backend: any Backend) throws -> Tensor
}

/// Noise from the counter-based Philox stream: identical on every backend for a seed, and
/// addressable by frame, so any block's noise can be produced without generating the ones before it.
public final class PhiloxNoise: NoiseSource {
    public let seed: UInt64
    public init(seed: UInt64) { self.seed = seed }

    public func initial(startFrame: Int, count: Int, shape: (h: Int, w: Int, c: Int), on backend: any Backend) throws -> Tensor {
        let perFrame = UInt64(shape.h * shape.w * shape.c)
        return try backend.randomNormal([count, shape.h, shape.w, shape.c], seed: seed,
                                        offset: UInt64(startFrame) &* perFrame, dtype: .f32)
    }

    public func renoise(startFrame: Int, step: Int, count: Int, shape: (h: Int, w: Int, c: Int), on backend: any Backend) throws -> Tensor {
        // A separate stream per (frame, step): the key mixes the seed with the draw's identity.
        let stream = splitMix(seed ^ splitMix(UInt64(startFrame) << 8 | UInt64(step & 0xFF) | 1 << 63))
        return try backend.randomNormal([count, shape.h, shape.w, shape.c], seed: stream, offset: 0, dtype: .f32)
    }
}

/// Noise given up front in the reference layout (for parity with recorded runs):
/// `initial` is `[frames, C, H, W]`, `renoise` is `[blocks, steps - 1, framesPerBlock, C, H, W]`.
public final class RecordedNoise: NoiseSource {
    let initialNoise: [Float]
    let renoiseDraws: [Float]
    let frames: Int
    let chw: (c: Int, h: Int, w: Int)
    let framesPerBlock: Int
    let stepsPerBlock: Int

    public init(initial: Tensor, renoise: Tensor) throws {
        try require(initial.rank == 4, "RecordedNoise", "initial noise must be [frames, C, H, W], got \(initial.shape)")
        try require(renoise.rank == 6 && Array(renoise.shape.dims[3...]) == Array(initial.shape.dims[1...]), "RecordedNoise",
                    "renoise must be [blocks, steps-1, framesPerBlock, C, H, W] matching \(initial.shape), got \(renoise.shape)")
        initialNoise = try initial.toFloats()
        renoiseDraws = try renoise.toFloats()
        frames = initial.shape[0]
        chw = (initial.shape[1], initial.shape[2], initial.shape[3])
        framesPerBlock = renoise.shape[2]
        stepsPerBlock = renoise.shape[1]
    }

    /// Only initial noise (`[frames, C, H, W]`): a sampler that draws nothing else (LongLive 2.0's UniPC).
    public init(initial: Tensor) throws {
        try require(initial.rank == 4, "RecordedNoise", "initial noise must be [frames, C, H, W], got \(initial.shape)")
        initialNoise = try initial.toFloats()
        renoiseDraws = []
        frames = initial.shape[0]
        chw = (initial.shape[1], initial.shape[2], initial.shape[3])
        framesPerBlock = 1
        stepsPerBlock = 0
    }

    private func channelLast(_ values: ArraySlice<Float>, count: Int, on backend: any Backend) throws -> Tensor {
        let t = try backend.tensor(Array(values), shape: [count, chw.c, chw.h, chw.w])
        return try backend.permute(t, [0, 2, 3, 1])
    }

    private func check(_ shape: (h: Int, w: Int, c: Int)) throws {
        guard shape.h == chw.h, shape.w == chw.w, shape.c == chw.c else {
            throw ReelError.input("recorded noise is \(chw.c)x\(chw.h)x\(chw.w) per frame, the generator needs \(shape.c)x\(shape.h)x\(shape.w)")
        }
    }

    public func initial(startFrame: Int, count: Int, shape: (h: Int, w: Int, c: Int), on backend: any Backend) throws -> Tensor {
        try check(shape)
        guard startFrame + count <= frames else {
            throw ReelError.input("recorded noise has \(frames) frames; frame \(startFrame + count - 1) was asked for")
        }
        let n = chw.c * chw.h * chw.w
        return try channelLast(initialNoise[(startFrame * n)..<((startFrame + count) * n)], count: count, on: backend)
    }

    public func renoise(startFrame: Int, step: Int, count: Int, shape: (h: Int, w: Int, c: Int), on backend: any Backend) throws -> Tensor {
        try check(shape)
        let block = startFrame / framesPerBlock
        let n = chw.c * chw.h * chw.w
        let per = framesPerBlock * n
        let start = (block * stepsPerBlock + step) * per
        guard count == framesPerBlock, step < stepsPerBlock, start + per <= renoiseDraws.count else {
            throw ReelError.input("recorded noise has no re-noise draw for block \(block), step \(step)")
        }
        return try channelLast(renoiseDraws[start..<(start + per)], count: count, on: backend)
    }
}

/// SplitMix64's finalizer: a seed for one noise draw from a seed and the draw's identity.
func splitMix(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
