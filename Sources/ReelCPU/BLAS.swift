import Foundation
import ReelCore

/// A CBLAS library loaded at run time (dlopen), used for `matmul` when installed.
///
/// Search order: the path in `REEL_BLAS` (`REEL_BLAS=none` disables BLAS), then OpenBLAS, BLIS,
/// the reference/ATLAS CBLAS and MKL under their usual sonames. A library named by `REEL_BLAS` is
/// used as asked; one found by the search only when it measures faster (`GEMMSelection`). Nothing is linked at build time,
/// so the binary runs on machines without any BLAS.
public final class BLAS: @unchecked Sendable {
    typealias SGEMMFunction = @convention(c) (
        Int32, Int32, Int32, Int32, Int32, Int32, Float,
        UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32
    ) -> Void
    typealias SetThreadsFunction = @convention(c) (Int32) -> Void

    /// The library found, or nil when none is installed or `REEL_BLAS=none`.
    public static let shared: BLAS? = load()

    /// Whether `REEL_BLAS=none` turned BLAS off.
    public static var disabledByEnvironment: Bool {
        ProcessInfo.processInfo.environment["REEL_BLAS"]?.lowercased() == "none"
    }

    /// Whether the library was named by `REEL_BLAS` (then `GEMMPath.auto` runs it without measuring).
    public var named: Bool { path == ProcessInfo.processInfo.environment["REEL_BLAS"] }

    static let candidates = [
        "libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0",
        "libblis.so.4", "libblis.so", "libcblas.so.3", "libcblas.so",
        "libmkl_rt.so", "libmkl_rt.so.2", "libblas.so.3",
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    ]

    /// The path or soname that was opened.
    public let path: String
    private let handle: UnsafeMutableRawPointer
    private let sgemmFunction: SGEMMFunction
    private let setThreads: SetThreadsFunction?
    private let lock = NSLock()
    private var currentThreads: Int32 = 0

    private init?(path: String) {
        guard let h = dlopen(path, RTLD_NOW | RTLD_LOCAL) else { return nil }
        guard let sym = dlsym(h, "cblas_sgemm") else {
            dlclose(h)
            return nil
        }
        self.path = path
        handle = h
        sgemmFunction = unsafeBitCast(sym, to: SGEMMFunction.self)
        let setter = dlsym(h, "openblas_set_num_threads") ?? dlsym(h, "bli_thread_set_num_threads")
            ?? dlsym(h, "MKL_Set_Num_Threads")
        setThreads = setter.map { unsafeBitCast($0, to: SetThreadsFunction.self) }
    }

    private static func load() -> BLAS? {
        let env = ProcessInfo.processInfo.environment["REEL_BLAS"]
        if let env, env.lowercased() == "none" { return nil }
        if let env, !env.isEmpty, let blas = BLAS(path: env) { return blas }
        for name in candidates {
            if let blas = BLAS(path: name) { return blas }
        }
        return nil
    }

    /// Row-major `C = alpha * A * op(B) + beta * C` on `threads` threads of the library's pool.
    func sgemm(transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
               a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
               beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int) throws {
        guard m > 0, n > 0 else { return }
        for v in [m, n, k, lda, ldb, ldc] where v > Int(Int32.max) {
            throw ReelError.library(name: "BLAS", message: "dimension \(v) exceeds the 32-bit CBLAS interface")
        }
        lock.lock()
        defer { lock.unlock() }
        if let setThreads, currentThreads != Int32(threads) {
            setThreads(Int32(threads))
            currentThreads = Int32(threads)
        }
        // CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112.
        sgemmFunction(101, 111, transB ? 112 : 111, Int32(m), Int32(n), Int32(k), alpha,
                      a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
