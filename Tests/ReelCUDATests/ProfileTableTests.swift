import Testing
@testable import ReelCUDA

/// The profiler's sums and tables (`REEL_PROFILE=1`), from made-up timings: no GPU needed.
@Suite struct ProfileTableTests {
    /// Two streams: a DiT-like one (GEMMs, attention, elementwise) and a VAE-like one (convolutions).
    static func sample() -> ProfileTable {
        var t = ProfileTable()
        var clock = 0.0
        func op(_ stream: String, _ label: String, _ ms: Double, gap: Double = 0.01) {
            t.add(stream: stream, label: label, start: clock, end: clock + ms)
            clock += ms + gap
        }
        for _ in 0..<4 {
            op("stream 1", "gemm 4680x8960x1536", 0.9)
            op("stream 1", "gemm 4680x1536x8960", 0.85)
            op("stream 1", "cudnn sdpa 4680x9360 h12 d128", 1.2)
            op("stream 1", "unary_v8 gelu_tanh", 0.1)
            op("stream 1", "binary_v8 add", 0.05)
            op("stream 1", "memcpy 14.4 MB", 0.02)
        }
        clock = 0.5
        for _ in 0..<2 {
            op("stream 2", "cudnn conv 1x4x240x416x384 k3x3x3 -> 384", 2.0, gap: 0.5)
            op("stream 2", "cudnn conv 1x4x480x832x192 k3x3x3 -> 192", 3.0, gap: 0.5)
            op("stream 2", "l2_norm_narrow_v8", 0.4, gap: 0.5)
        }
        return t
    }

    @Test func sumsPerStreamAndLabel() throws {
        let t = Self.sample()
        #expect(t.streams.map(\.name) == ["stream 1", "stream 2"])
        let s1 = t.streams[0], s2 = t.streams[1]
        #expect(s1.ops == 24 && s2.ops == 6)
        #expect(abs(s1.busy - 4 * 3.12) < 1e-9)
        #expect(abs(s1.span - (4 * 3.12 + 23 * 0.01)) < 1e-9)  // first start to last end: ops and the gaps between them
        #expect(abs(s2.span - (2 * 5.4 + 5 * 0.5)) < 1e-9)
        let rows = t.rows(of: s1, grouping: .fine)
        #expect(rows.map(\.label).prefix(3) == ["cudnn sdpa 4680x9360 h12 d128", "gemm 4680x8960x1536", "gemm 4680x1536x8960"])
        #expect(rows[0].entry.calls == 4 && abs(rows[0].entry.milliseconds - 4.8) < 1e-9)
    }

    @Test func familiesDropShapesAndSizes() {
        #expect(ProfileTable.family("gemm 4680x8960x1536") == "gemm")
        #expect(ProfileTable.family("gemm 75x75x128 batch 12") == "gemm")
        #expect(ProfileTable.family("cudnn conv 1x4x60x104x384 k3x3x3 -> 384") == "cudnn conv")
        #expect(ProfileTable.family("cudnn sdpa 4680x9360 h12 d128") == "cudnn sdpa")
        #expect(ProfileTable.family("unary_v8 silu") == "unary_v8")
        #expect(ProfileTable.family("memcpy 14.4 MB") == "memcpy")
        #expect(ProfileTable.family("rms_norm_rope_v8") == "rms_norm_rope_v8")
        let t = Self.sample(), coarse = t.rows(of: t.streams[1], grouping: .coarse)
        #expect(coarse.map(\.label) == ["cudnn conv", "l2_norm_narrow_v8"])
        #expect(coarse[0].entry.calls == 4)
    }

    @Test func tableIsSortedAndBounded() {
        var t = ProfileTable()
        for i in 0..<100 { t.add(stream: "vae", label: "kernel_\(i)", start: Double(i), end: Double(i) + Double(i + 1) / 100) }
        let text = t.render(rowsPerStream: 25, topRows: 40)
        let lines = text.split(separator: "\n")
        // title, stream line, families, header, 40 rows (one stream: the top-rows count), the rest in one row
        #expect(lines.count == 4 + 40 + 1)
        #expect(lines[4].hasPrefix("  kernel_99 "))
        #expect(lines.last!.hasPrefix("  (60 more)"))
        #expect(text.contains("vae: span 100.0 ms, busy 50.5 ms (50.5% of span), 100 ops"))
    }

    @Test func reportFormat() {
        let text = Self.sample().render()
        print(text)
        #expect(text.hasPrefix("GPU time per op: 2 streams, 30 ops, fine grouping\n"))
        #expect(text.contains("stream 1: span 12.7 ms, busy 12.5 ms (98.2% of span), 24 ops\n"))
        #expect(text.contains("  by family: gemm 56.1%, cudnn sdpa 38.5%, unary_v8 3.2%, binary_v8 1.6%, memcpy 0.6%\n"))
        #expect(text.contains("  cudnn sdpa 4680x9360 h12 d128                   4        4.80     1200.0    38.5\n"))
        #expect(text.contains("top 40 over all streams"))
        #expect(text.contains("  stream 2  cudnn conv 1x4x480x832x192 k3x3x3 -> 192        2        6.00     3000.0    25.8\n"))
        let coarse = Self.sample().render(grouping: .coarse)
        #expect(coarse.contains("  gemm                        8        7.00      875.0    56.1\n"))
        #expect(!coarse.contains("by family"))
    }

    @Test func memoryAtThePeakPerStreamAndSize() {
        let m = MemoryBreakdown(peakBytes: 10_970_000_000, snapshotBytes: 10_950_000_000, step: 64 << 20, bins: [
            .init(stream: "stream 1", blockBytes: 2 << 20, count: 1000),
            .init(stream: "stream 1", blockBytes: 96 << 20, count: 30),
            .init(stream: "stream 2", blockBytes: 320 << 20, count: 4),
            .init(stream: "stream 1", blockBytes: 512, count: 7),
        ])
        let text = m.render(top: 2)
        print(text)
        #expect(text.hasPrefix("device memory at the peak: 10.97 GB (blocks counted at 10.95 GB; counted each time the peak rose 64 MiB)\n"))
        #expect(text.contains("stream 1: 5.12 GB in 1037 blocks\n"))
        let s1 = text.components(separatedBy: "stream 1:")[1]
        #expect(s1.contains("  96 MiB           30       3.020         59.0\n  2 MiB          1000       2.097         41.0\n  (1 more)"))
        // The larger stream first.
        #expect(text.range(of: "stream 1:")!.lowerBound < text.range(of: "stream 2:")!.lowerBound)
    }
}
