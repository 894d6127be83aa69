/// A parity run's outcome (`LongLiveParity`, `LongLive2Parity`): Reel's latents, the reference code's, and what a
/// v = 0 model gives from the same noise, each [frames, C, H, W] flattened, compared relative to the model's
/// contribution.
public struct ParityResult: Sendable {
    public var ours: [Float], reference: [Float], baseline: [Float]
    /// Elements per block (the schedule's latent frames a block).
    public var blockSize: Int

    public init(ours: [Float], reference: [Float], baseline: [Float], blockSize: Int) {
        self.ours = ours; self.reference = reference; self.baseline = baseline; self.blockSize = blockSize
    }

    /// ||ours - reference|| / ||reference - baseline||: the error relative to the model's contribution.
    public var relativeError: Double { relativeError(in: ours.indices) }

    /// The largest relative error of any one block: a wrong variant that only changes the blocks after a switch
    /// shows there even when the whole-video error dilutes it.
    public var maxBlockError: Double {
        stride(from: 0, to: ours.count, by: blockSize).map { relativeError(in: $0..<min($0 + blockSize, ours.count)) }.max() ?? 0
    }

    func relativeError(in range: Range<Int>) -> Double {
        var num = 0.0, den = 0.0
        for i in range {
            num += Double(ours[i] - reference[i]) * Double(ours[i] - reference[i])
            den += Double(reference[i] - baseline[i]) * Double(reference[i] - baseline[i])
        }
        return (num / den).squareRoot()
    }
}
