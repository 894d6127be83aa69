import Foundation

/// What `GEMMPath.auto` runs on this machine, and why.
///
/// A run-time BLAS is not always the faster one: OpenBLAS measured slower than Reel's own kernel on
/// the GPU host's CPU (docs/perf-notes.md) and faster on others. So `auto` times both once, at first use,
/// on a product of the shape the models run (a DiT linear's rows), and keeps the BLAS only when it is
/// clearly faster (`margin`): a near tie goes to the own kernel, whose rounding of a row does not depend
/// on the row count (chunked and whole passes agree bit for bit) and is the same on every x86-64 machine.
public struct GEMMSelection: Sendable, CustomStringConvertible {
    /// `.own` or `.blas`: what `.auto` resolved to.
    public let path: GEMMPath
    /// The library opened, when one is installed.
    public let blasPath: String?
    /// Measured rates in GFLOP/s (nil when not measured).
    public let ownRate: Double?
    public let blasRate: Double?
    /// A sentence a person reads: the choice and its reason.
    public let reason: String

    /// The BLAS must beat the own kernel by this factor to be chosen.
    public static let margin = 1.25

    public var description: String { reason }

    /// The choice for `threads` workers, measured once per thread count and process.
    public static func resolved(threads: Int) -> GEMMSelection {
        lock.lock()
        defer { lock.unlock() }
        if let c = choices[threads] { return c }
        let c = measure(threads: threads)
        choices[threads] = c
        return c
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var choices: [Int: GEMMSelection] = [:]  // guarded by `lock`

    private static func measure(threads: Int) -> GEMMSelection {
        guard let blas = BLAS.shared else {
            return GEMMSelection(path: .own, blasPath: nil, ownRate: nil, blasRate: nil,
                                 reason: "own kernel: no CBLAS library found (\(BLAS.disabledByEnvironment ? "REEL_BLAS=none" : "none installed"))")
        }
        if blas.named {
            return GEMMSelection(path: .blas, blasPath: blas.path, ownRate: nil, blasRate: nil,
                                 reason: "\(blas.path): named by REEL_BLAS")
        }
        // [384, 1024] x [1024, 1024]^T: 0.8 GFLOP, ~10-40 ms a run on 2 cores; best of 3 after a warm-up.
        let (m, n, k) = (384, 1024, 1024)
        let a = (0..<(m * k)).map { Float(($0 * 7919) % 1009) / 1009 - 0.5 }
        let b = (0..<(n * k)).map { Float(($0 * 104_729) % 997) / 997 - 0.5 }
        var c = [Float](repeating: 0, count: m * n)
        let backend = CPUBackend(threads: threads, gemm: .own)
        func rate(_ run: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) throws -> Void) -> Double? {
            var best = Double.infinity
            for rep in 0..<4 {
                let start = DispatchTime.now().uptimeNanoseconds
                let ok: Bool = a.withUnsafeBufferPointer { ap in
                    b.withUnsafeBufferPointer { bp in
                        c.withUnsafeMutableBufferPointer { cp in
                            (try? run(ap.baseAddress!, bp.baseAddress!, cp.baseAddress!)) != nil
                        }
                    }
                }
                guard ok else { return nil }
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                if rep > 0 { best = min(best, seconds) }
            }
            return 2 * Double(m * n * k) / best / 1e9
        }
        let own = rate { a, b, c in
            SGEMM.run(transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: k, beta: 0, c: c, ldc: n,
                      backend: backend)
        }
        let lib = rate { a, b, c in
            try blas.sgemm(transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: k, beta: 0, c: c, ldc: n,
                           threads: threads)
        }
        let name = (blas.path as NSString).lastPathComponent
        let rates = String(format: "own %.1f GFLOP/s, %@ %.1f GFLOP/s on %d thread%@", own ?? 0, name, lib ?? 0,
                           threads, threads == 1 ? "" : "s")
        guard let own, let lib else {
            return GEMMSelection(path: .own, blasPath: blas.path, ownRate: own, blasRate: lib,
                                 reason: "own kernel: \(name) failed its trial product")
        }
        if lib >= own * margin {
            return GEMMSelection(path: .blas, blasPath: blas.path, ownRate: own, blasRate: lib,
                                 reason: "\(name): measured faster at first use (\(rates))")
        }
        return GEMMSelection(path: .own, blasPath: blas.path, ownRate: own, blasRate: lib,
                             reason: "own kernel: \(name) is not \(margin)x faster at first use (\(rates))")
    }
}
