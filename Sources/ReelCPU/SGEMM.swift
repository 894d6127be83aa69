import Foundation

/// Reel's own single-precision GEMM, in the BLIS arrangement: B is packed into KC x NC panels of
/// NR-column strips, A into MC x KC blocks of MR-row strips, and a 6 x 16 register-blocked micro-kernel
/// (12 AVX accumulators) runs over the packed strips. Packing makes every micro-kernel load
/// sequential and lets one A block stay in L2 while the B panel streams from L3.
///
/// Row-major throughout: `C[m, n] = alpha * A[m, k] * op(B) + beta * C`, where op(B) is `B[k, n]`
/// or, with `transB`, `B[n, k]^T`.
enum SGEMM {
    static let mr = 6
    static let nr = 16
    /// Depth of one packed block: an MR x KC strip of A and a KC x NR strip of B fit in L1.
    static let kc = 256
    /// Rows of one packed A block (multiple of MR): MC x KC floats fit in L2.
    static let mc = 120
    /// Columns of one packed B panel (multiple of NR).
    static let nc = 3072

    /// Packs rows `i0 ..< i0+rows`, depth `p0 ..< p0+depth` of A into MR-row strips
    /// (`dst[strip][k][r]`, zero rows past the end). Convolutions pack straight from their input
    /// (implicit GEMM) instead of materializing im2col.
    typealias PackA = (_ i0: Int, _ rows: Int, _ p0: Int, _ depth: Int, _ dst: UnsafeMutablePointer<Float>) -> Void

    static func run(transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, backend: CPUBackend) {
        run(transB: transB, m: m, n: n, k: k, alpha: alpha, packA: { i0, rows, p0, depth, dst in
            packA(a, lda, i0, rows, p0, depth, dst)
        }, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, backend: backend)
    }

    static func run(transB: Bool, m: Int, n: Int, k: Int, alpha: Float, packA: PackA,
                    b: UnsafePointer<Float>, ldb: Int,
                    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, backend: CPUBackend) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            for i in 0..<m { scaleC(c + i * ldc, n, beta) }
            return
        }
        let packedB = UnsafeMutablePointer<Float>.allocate(capacity: kc * nc)
        defer { packedB.deallocate() }
        let workers = max(1, backend.threads)
        let packedA = UnsafeMutablePointer<Float>.allocate(capacity: workers * mc * kc)
        defer { packedA.deallocate() }
        var jc = 0
        while jc < n {
            let ncCur = min(nc, n - jc)
            let panels = (ncCur + nr - 1) / nr
            var pc = 0
            while pc < k {
                let kcCur = min(kc, k - pc)
                let betaCur: Float = pc == 0 ? beta : 1
                // Pack op(B)[pc ..< pc+kc, jc ..< jc+nc], strips of NR columns spread over workers.
                backend.parallelFor(panels, grain: 4) { r in
                    for p in r {
                        packB(transB, b, ldb, pc, kcCur, jc + p * nr, min(nr, ncCur - p * nr), packedB + p * nr * kcCur)
                    }
                }
                // Tasks: row blocks x column splits, at least ~8 per worker so that dynamic
                // scheduling evens out; each task packs its own A block.
                let mBlocks = (m + mc - 1) / mc
                let nSplits = min(panels, max(1, (8 * workers + mBlocks - 1) / mBlocks), max(1, panels / 4))
                let pb = UnsafePointer(packedB)
                backend.parallelTasks(mBlocks * nSplits) { w, t in
                    let ib = t / nSplits, s = t % nSplits
                    let ic = ib * mc, mcCur = min(mc, m - ic)
                    let pa = packedA + w * mc * kc
                    packA(ic, mcCur, pc, kcCur, pa)
                    let p0 = panels * s / nSplits, p1 = panels * (s + 1) / nSplits
                    macroKernel(kcCur, pa, mcCur, pb, p0, p1, ncCur, c + ic * ldc + jc, ldc, alpha, betaCur)
                }
                pc += kcCur
            }
            jc += ncCur
        }
    }

    /// Runs the micro-kernel over MR-row strips of a packed A block and NR-column strips
    /// `p0 ..< p1` of a packed B panel; `c` is the block's top-left element.
    @inline(__always)
    static func macroKernel(_ kc: Int, _ pa: UnsafePointer<Float>, _ mcCur: Int,
                            _ pb: UnsafePointer<Float>, _ p0: Int, _ p1: Int, _ ncCur: Int,
                            _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ alpha: Float, _ beta: Float) {
        var edge = [Float](repeating: 0, count: mr * nr)
        for p in p0..<p1 {
            let j = p * nr, nrCur = min(nr, ncCur - j)
            var i = 0
            while i < mcCur {
                let mrCur = min(mr, mcCur - i)
                let a = pa + i * kc, b = pb + p * nr * kc
                if mrCur == mr && nrCur == nr {
                    kernel6x16(kc, a, b, c + i * ldc + j, ldc, alpha, beta)
                } else {
                    // Partial tile: compute the full 6 x 16 into a scratch tile, copy what is inside C.
                    edge.withUnsafeMutableBufferPointer { e in
                        kernel6x16(kc, a, b, e.baseAddress!, nr, 1, 0)
                        for r in 0..<mrCur {
                            let cr = c + (i + r) * ldc + j
                            for q in 0..<nrCur {
                                cr[q] = alpha * e[r * nr + q] + (beta == 0 ? 0 : beta * cr[q])
                            }
                        }
                    }
                }
                i += mr
            }
        }
    }

    /// C[0..<6, 0..<16] = alpha * (A strip x B strip) + beta * C, over `kc` packed steps.
    @inline(never)
    static func kernel6x16(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                           _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ alpha: Float, _ beta: Float) {
        var c00 = F8(), c01 = F8(), c10 = F8(), c11 = F8(), c20 = F8(), c21 = F8()
        var c30 = F8(), c31 = F8(), c40 = F8(), c41 = F8(), c50 = F8(), c51 = F8()
        var pa = a, pb = b
        for _ in 0..<kc {
            let b0 = load8(pb), b1 = load8(pb + 8)
            var x = F8(repeating: pa[0])
            c00 = c00.addingProduct(x, b0); c01 = c01.addingProduct(x, b1)
            x = F8(repeating: pa[1])
            c10 = c10.addingProduct(x, b0); c11 = c11.addingProduct(x, b1)
            x = F8(repeating: pa[2])
            c20 = c20.addingProduct(x, b0); c21 = c21.addingProduct(x, b1)
            x = F8(repeating: pa[3])
            c30 = c30.addingProduct(x, b0); c31 = c31.addingProduct(x, b1)
            x = F8(repeating: pa[4])
            c40 = c40.addingProduct(x, b0); c41 = c41.addingProduct(x, b1)
            x = F8(repeating: pa[5])
            c50 = c50.addingProduct(x, b0); c51 = c51.addingProduct(x, b1)
            pa += 6; pb += 16
        }
        let al = F8(repeating: alpha)
        @inline(__always) func put(_ v0: F8, _ v1: F8, _ row: Int) {
            let p = c + row * ldc
            if beta == 0 {
                store8(al * v0, p); store8(al * v1, p + 8)
            } else {
                let be = F8(repeating: beta)
                store8(al * v0 + be * load8(p), p); store8(al * v1 + be * load8(p + 8), p + 8)
            }
        }
        put(c00, c01, 0); put(c10, c11, 1); put(c20, c21, 2)
        put(c30, c31, 3); put(c40, c41, 4); put(c50, c51, 5)
    }

    /// Packs rows `i0 ..< i0+rows`, depth `p0 ..< p0+depth` of A into MR-row strips
    /// (`dst[strip][k][r]`), zero-filling the last strip.
    static func packA(_ a: UnsafePointer<Float>, _ lda: Int, _ i0: Int, _ rows: Int, _ p0: Int, _ depth: Int,
                      _ dst: UnsafeMutablePointer<Float>) {
        var i = 0
        while i < rows {
            let strip = dst + i * depth
            let valid = min(mr, rows - i)
            for r in 0..<mr {
                if r < valid {
                    let src = a + (i0 + i + r) * lda + p0
                    for k in 0..<depth { strip[k * mr + r] = src[k] }
                } else {
                    for k in 0..<depth { strip[k * mr + r] = 0 }
                }
            }
            i += mr
        }
    }

    /// Packs depth `p0 ..< p0+depth`, columns `j0 ..< j0+cols` (cols <= NR) of op(B) into one
    /// NR-column strip (`dst[k][q]`), zero-filling missing columns.
    static func packB(_ transB: Bool, _ b: UnsafePointer<Float>, _ ldb: Int, _ p0: Int, _ depth: Int,
                      _ j0: Int, _ cols: Int, _ dst: UnsafeMutablePointer<Float>) {
        if !transB {
            if cols == nr {
                for k in 0..<depth {
                    let src = b + (p0 + k) * ldb + j0
                    store8(load8(src), dst + k * nr); store8(load8(src + 8), dst + k * nr + 8)
                }
            } else {
                for k in 0..<depth {
                    let src = b + (p0 + k) * ldb + j0
                    for q in 0..<nr { dst[k * nr + q] = q < cols ? src[q] : 0 }
                }
            }
        } else {
            // B is [N, K]: column q of the strip is row j0+q of B, contiguous in k.
            for q in 0..<nr {
                if q < cols {
                    let src = b + (j0 + q) * ldb + p0
                    for k in 0..<depth { dst[k * nr + q] = src[k] }
                } else {
                    for k in 0..<depth { dst[k * nr + q] = 0 }
                }
            }
        }
    }

    static func scaleC(_ c: UnsafeMutablePointer<Float>, _ n: Int, _ beta: Float) {
        for j in 0..<n { c[j] = beta == 0 ? 0 : beta * c[j] }
    }
}
