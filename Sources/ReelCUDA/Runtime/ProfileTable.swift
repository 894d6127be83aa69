import Foundation

/// GPU time per stream and label, summed from timed ops (see `CUDAProfiler`), and its tables.
/// A plain value: built and printed without a GPU.
///
/// Times are milliseconds from a per-stream origin (the stream's first timed op), so a stream's span
/// is its last end minus its first start, and its busy time the sum of its ops' times. Busy/span
/// below 100% is time the stream's queue ran dry (launch overhead, host work, waits on the other stream).
public struct ProfileTable: Sendable, Equatable {
    /// How labels are gathered into rows.
    public enum Grouping: String, Sendable, CaseIterable {
        /// One row per label: kernel name (with the op it runs), GEMM or convolution shape, copy size.
        case fine
        /// One row per family of labels (`ProfileTable.family`): gemm, cudnn conv, each kernel, memcpy.
        case coarse
    }

    /// One row's figures.
    public struct Entry: Sendable, Equatable {
        public var calls = 0
        public var milliseconds = 0.0
    }

    /// The figures of one stream.
    public struct Stream: Sendable, Equatable {
        public let name: String
        public fileprivate(set) var ops = 0
        /// Sum of the op times, ms.
        public fileprivate(set) var busy = 0.0
        public fileprivate(set) var firstStart = Double.infinity
        public fileprivate(set) var lastEnd = -Double.infinity
        public fileprivate(set) var entries: [String: Entry] = [:]
        /// From the first op's start to the last op's end, ms.
        public var span: Double { ops == 0 ? 0 : lastEnd - firstStart }
    }

    /// Streams in the order they first appear.
    public private(set) var streams: [Stream] = []

    public init() {}

    /// Adds one op: `start` and `end` in ms from the stream's origin.
    public mutating func add(stream: String, label: String, start: Double, end: Double) {
        let i: Int
        if let k = streams.firstIndex(where: { $0.name == stream }) { i = k } else {
            streams.append(Stream(name: stream)); i = streams.count - 1
        }
        let ms = max(end - start, 0)
        streams[i].ops += 1
        streams[i].busy += ms
        streams[i].firstStart = min(streams[i].firstStart, start)
        streams[i].lastEnd = max(streams[i].lastEnd, end)
        streams[i].entries[label, default: Entry()].calls += 1
        streams[i].entries[label, default: Entry()].milliseconds += ms
    }

    /// A label's family: its first word, two for cuDNN's ops, so shapes, sizes and the op a generic
    /// kernel runs fall away: `gemm 4680x8960x1536` -> `gemm`, `unary_v8 silu` -> `unary_v8`,
    /// `cudnn conv 1x4x60x104x384 k3x3x3 -> 384` -> `cudnn conv`.
    public static func family(_ label: String) -> String {
        let words = label.split(separator: " ", maxSplits: 2)
        if words.count > 1 && words[0] == "cudnn" { return words[0] + " " + words[1] }
        return words.first.map(String.init) ?? label
    }

    /// Rows of one stream under a grouping, largest total first (ties by label).
    public func rows(of stream: Stream, grouping: Grouping) -> [(label: String, entry: Entry)] {
        var grouped: [String: Entry] = [:]
        for (label, e) in stream.entries {
            let key = grouping == .fine ? label : Self.family(label)
            grouped[key, default: Entry()].calls += e.calls
            grouped[key, default: Entry()].milliseconds += e.milliseconds
        }
        return grouped.map { ($0.key, $0.value) }.sorted { a, b in
            a.entry.milliseconds != b.entry.milliseconds ? a.entry.milliseconds > b.entry.milliseconds : a.label < b.label
        }
    }

    /// The report: per stream its span, busy time, its largest families on one line and a table of
    /// its `rowsPerStream` largest rows (the rest summed in one row); then, with several streams,
    /// the `topRows` largest rows over all streams. With one stream its table has `topRows` rows.
    public func render(grouping: Grouping = .fine, rowsPerStream: Int = 25, topRows: Int = 40) -> String {
        var out = ""
        let totalOps = streams.reduce(0) { $0 + $1.ops }
        let allBusy = streams.reduce(0) { $0 + $1.busy }
        out += "GPU time per op: \(streams.count) stream\(streams.count == 1 ? "" : "s"), \(totalOps) ops, \(grouping.rawValue) grouping\n"
        if streams.isEmpty { return out + "  (no ops were timed)\n" }
        let perStream = streams.count == 1 ? topRows : rowsPerStream
        let allRows = streams.map { rows(of: $0, grouping: grouping) }
        let width = min(48, max(20, allRows.flatMap { $0.prefix(max(perStream, topRows)).map(\.label.count) }.max() ?? 20))
        func cell(_ s: String, _ w: Int) -> String {
            s.count > w ? String(s.prefix(w - 1)) + "~" : s.padding(toLength: w, withPad: " ", startingAt: 0)
        }
        func line(_ prefix: String, _ label: String, _ e: Entry, _ share: Double) -> String {
            prefix + cell(label, width) + String(format: " %8d %11.2f %10.1f %7.1f\n", e.calls, e.milliseconds,
                                                  e.milliseconds * 1000 / Double(max(e.calls, 1)), share * 100)
        }
        for (s, table) in zip(streams, allRows) {
            out += String(format: "%@: span %.1f ms, busy %.1f ms (%.1f%% of span), %d ops\n", s.name, s.span, s.busy,
                          s.span > 0 ? s.busy / s.span * 100 : 0, s.ops)
            if grouping == .fine {
                let families = rows(of: s, grouping: .coarse).prefix(8).map {
                    String(format: "%@ %.1f%%", $0.label, s.busy > 0 ? $0.entry.milliseconds / s.busy * 100 : 0)
                }
                out += "  by family: " + families.joined(separator: ", ") + "\n"
            }
            out += "  " + cell("op", width) + "    calls    total ms    mean us  % busy\n"
            for (label, e) in table.prefix(perStream) { out += line("  ", label, e, s.busy > 0 ? e.milliseconds / s.busy : 0) }
            let rest = table.dropFirst(perStream)
            if !rest.isEmpty {
                let e = rest.reduce(into: Entry()) { $0.calls += $1.entry.calls; $0.milliseconds += $1.entry.milliseconds }
                out += line("  ", "(\(rest.count) more)", e, s.busy > 0 ? e.milliseconds / s.busy : 0)
            }
        }
        if streams.count > 1 {
            out += "top \(topRows) over all streams (% of all streams' busy time):\n"
            let nameWidth = max(6, streams.map(\.name.count).max() ?? 6)
            out += "  " + cell("stream", nameWidth) + "  " + cell("op", width) + "    calls    total ms    mean us  % busy\n"
            let merged = zip(streams, allRows).flatMap { s, rows in rows.map { (s.name, $0.label, $0.entry) } }
                .sorted { $0.2.milliseconds > $1.2.milliseconds }
            for (name, label, e) in merged.prefix(topRows) {
                out += line("  " + cell(name, nameWidth) + "  ", label, e, allBusy > 0 ? e.milliseconds / allBusy : 0)
            }
        }
        return out
    }

    /// "12.3 MB" / "48 KB" (decimal units, as the bench's GB).
    public static func bytes(_ n: Int) -> String {
        n >= 1_000_000 ? String(format: "%.1f MB", Double(n) / 1e6) : String(format: "%.0f KB", Double(n) / 1e3)
    }
}

/// What the live device memory was made of at its peak: blocks per stream and block size, as the
/// caching allocator counted them (see `CUDAAllocator`). A plain value: built and printed without a GPU.
public struct MemoryBreakdown: Sendable, Equatable {
    public struct Bin: Sendable, Equatable {
        public var stream: String
        /// The allocator's rounded block size.
        public var blockBytes: Int
        public var count: Int
        public init(stream: String, blockBytes: Int, count: Int) { self.stream = stream; self.blockBytes = blockBytes; self.count = count }
    }

    /// The allocator's peak of live bytes since its last reset.
    public var peakBytes: Int
    /// Live bytes when `bins` were copied (the copy is taken as the peak rises, every `step` bytes).
    public var snapshotBytes: Int
    public var step: Int
    public var bins: [Bin]

    public init(peakBytes: Int, snapshotBytes: Int, step: Int, bins: [Bin]) {
        self.peakBytes = peakBytes; self.snapshotBytes = snapshotBytes; self.step = step; self.bins = bins
    }

    /// Per stream (largest first) its bytes and block count, and its `top` largest block sizes by bytes.
    public func render(top: Int = 15) -> String {
        var out = String(format: "device memory at the peak: %.2f GB (blocks counted at %.2f GB; counted each time the peak rose %d MiB)\n",
                         Double(peakBytes) / 1e9, Double(snapshotBytes) / 1e9, step >> 20)
        let byStream = Dictionary(grouping: bins, by: \.stream)
        let order = byStream.keys.sorted { a, b in
            let (x, y) = (byStream[a]!.reduce(0) { $0 + $1.blockBytes * $1.count }, byStream[b]!.reduce(0) { $0 + $1.blockBytes * $1.count })
            return x != y ? x > y : a < b
        }
        for name in order {
            let bins = byStream[name]!.sorted { a, b in
                a.blockBytes * a.count != b.blockBytes * b.count ? a.blockBytes * a.count > b.blockBytes * b.count : a.blockBytes > b.blockBytes
            }
            let total = bins.reduce(0) { $0 + $1.blockBytes * $1.count }
            out += String(format: "%@: %.2f GB in %d blocks\n", name, Double(total) / 1e9, bins.reduce(0) { $0 + $1.count })
            out += "  block size    count    total GB  % of stream\n"
            func line(_ size: String, _ count: Int, _ bytes: Int) -> String {
                "  " + size.padding(toLength: 12, withPad: " ", startingAt: 0)
                    + String(format: " %6d %11.3f %12.1f\n", count, Double(bytes) / 1e9, total > 0 ? Double(bytes) / Double(total) * 100 : 0)
            }
            for b in bins.prefix(top) { out += line(Self.blockSize(b.blockBytes), b.count, b.blockBytes * b.count) }
            let rest = bins.dropFirst(top)
            if !rest.isEmpty {
                out += line("(\(rest.count) more)", rest.reduce(0) { $0 + $1.count }, rest.reduce(0) { $0 + $1.blockBytes * $1.count })
            }
        }
        return out
    }

    /// A block size in the allocator's binary units: "96 MiB", "4.5 KiB".
    static func blockSize(_ n: Int) -> String {
        n >= 1 << 20 ? String(format: n % (1 << 20) == 0 ? "%.0f MiB" : "%.1f MiB", Double(n) / 1048576)
            : String(format: "%.1f KiB", Double(n) / 1024)
    }
}
