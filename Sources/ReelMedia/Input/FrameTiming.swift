/// Which input frame each output frame shows when a video is played at another frame rate.
///
/// Output frame `k` is shown at time `k / outputRate`; it takes the input frame whose interval
/// `[i / inputRate, (i + 1) / inputRate)` contains that time, `i = floor(k * inputRate / outputRate)`,
/// computed exactly on the rationals. A slower input repeats frames, a faster one skips them; equal
/// rates map frame to frame.
public enum FrameTiming {
    /// The input frame index shown at output frame `k` (0 for k <= 0).
    public static func inputFrame(forOutputFrame k: Int, input: FrameRate, output: FrameRate) -> Int {
        guard k > 0 else { return 0 }
        // i = floor(k * outDen * inNum / (outNum * inDen)); both factors fit in 62 bits (FrameRate bounds).
        let num = output.denominator * input.numerator, den = output.numerator * input.denominator
        let product = k.multipliedFullWidth(by: num)
        guard product.high < den else { return Int.max }
        return den.dividingFullWidth(product).quotient
    }
}
