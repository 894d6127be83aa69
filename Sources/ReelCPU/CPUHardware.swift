import Dispatch
import Foundation
import ReelCore

/// What this CPU can do at best, for benchmark floors: float32 FLOP/s from its specification and
/// measured, and a measured memory bandwidth.
public struct CPUHardware: Sendable {
    public var model: String
    public var cores: Int
    /// float32 lanes per FMA instruction the kernels are compiled for (AVX2: 8).
    public var simdWidth: Int
    /// FMA instructions issued per cycle per core (2 on every AVX2 core since Haswell and on Zen).
    public var fmaUnits: Int
    public var clockGHz: Double
    /// cores x SIMD width x FMA units x 2 FLOP x clock.
    public var specPeakFLOPS: Double { Double(cores * simdWidth * fmaUnits * 2) * clockGHz * 1e9 }

    /// Reads the model and clock from /proc/cpuinfo (the highest "cpu MHz" seen, or the GHz in the
    /// model name); the clock is 0 where neither is available.
    public static func describe(threads: Int) -> CPUHardware {
        var model = "unknown CPU", mhz = 0.0
        if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
            for line in info.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2 else { continue }
                if parts[0] == "model name" { model = parts[1] }
                if parts[0] == "cpu MHz", let v = Double(parts[1]) { mhz = max(mhz, v) }
            }
        }
        if mhz == 0, let r = model.range(of: #"[0-9.]+GHz"#, options: .regularExpression) {
            mhz = (Double(model[r].dropLast(3)) ?? 0) * 1000
        }
        #if arch(x86_64)
        let width = 8
        #else
        let width = 4
        #endif
        return CPUHardware(model: model, cores: threads, simdWidth: width, fmaUnits: 2, clockGHz: mhz / 1000)
    }

    /// Float32 FLOP/s of a register-only FMA loop (12 independent chains per thread) on `threads` threads.
    public static func measurePeakFLOPS(threads: Int) -> Double {
        let iterations = 20_000_000
        var best = 0.0
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            let sink = UncheckedSendable(UnsafeMutablePointer<Float>.allocate(capacity: threads))
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                sink.value[t] = fmaLoop(iterations, seed: Float(t))
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            sink.value.deallocate()
            best = max(best, Double(threads * iterations * 12 * 8 * 2) / seconds)
        }
        return best
    }

    @inline(never)
    static func fmaLoop(_ n: Int, seed: Float) -> Float {
        let m = F8(repeating: 0.999_999), a = F8(repeating: 1e-7)
        var c0 = F8(repeating: seed), c1 = c0 + 1, c2 = c0 + 2, c3 = c0 + 3, c4 = c0 + 4, c5 = c0 + 5
        var c6 = c0 + 6, c7 = c0 + 7, c8 = c0 + 8, c9 = c0 + 9, c10 = c0 + 10, c11 = c0 + 11
        for _ in 0..<n {
            c0 = c0.addingProduct(c0, m); c1 = c1.addingProduct(c1, m); c2 = c2.addingProduct(c2, m)
            c3 = c3.addingProduct(c3, m); c4 = c4.addingProduct(c4, m); c5 = c5.addingProduct(c5, m)
            c6 = c6.addingProduct(c6, a); c7 = c7.addingProduct(c7, a); c8 = c8.addingProduct(c8, a)
            c9 = c9.addingProduct(c9, a); c10 = c10.addingProduct(c10, a); c11 = c11.addingProduct(c11, a)
        }
        return (c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11).sum()
    }

    /// Bytes per second (read + written) of a parallel copy of 256 MB, best of five.
    public static func measureBandwidth(threads: Int) -> Double {
        let bytes = 256 << 20
        let src = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let dst = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { src.deallocate(); dst.deallocate() }
        memset(src, 1, bytes); memset(dst, 0, bytes)
        let s = UncheckedSendable(src), d = UncheckedSendable(dst)
        var best = 0.0
        for _ in 0..<5 {
            let start = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let lo = bytes * t / threads, hi = bytes * (t + 1) / threads
                memcpy(d.value + lo, s.value + lo, hi - lo)
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            best = max(best, Double(2 * bytes) / seconds)
        }
        return best
    }
}
