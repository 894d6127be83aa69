import CHeap
import Foundation

/// How the C heap (glibc's malloc) is tuned for a long-running process: applied once at start, before the
/// threads that allocate tensors run.
///
/// Why: glibc serves each thread from one of up to 8 arenas per core and gives back only an arena's top, and it
/// raises its mmap threshold to the largest mmapped chunk freed (up to 32 MiB), so that after the first large
/// tensors are freed, later ones of that size are carved out of arenas instead of getting pages of their own. In
/// `reel serve`, where every session's stages run on fresh threads, those freed tensors stay resident in the
/// arenas (docs/deploy.md, "Soak"). A fixed threshold sends large buffers to their own pages, unmapped on free;
/// fewer arenas leave fewer heaps to fragment.
public struct HeapPolicy: Sendable, Equatable, CustomStringConvertible {
    /// Allocations of at least this many bytes get pages of their own (`M_MMAP_THRESHOLD`); nil: glibc's dynamic
    /// threshold (128 KiB, rising up to 32 MiB).
    public var mmapThreshold: Int?
    /// Most arenas (`M_ARENA_MAX`); nil: glibc's 8 per core.
    public var arenaMax: Int?

    public init(mmapThreshold: Int? = nil, arenaMax: Int? = nil) {
        self.mmapThreshold = mmapThreshold
        self.arenaMax = arenaMax
    }

    /// glibc's own defaults: nothing set.
    public static let system = HeapPolicy()

    /// `reel serve`'s policy, chosen by soak runs (docs/deploy.md, "Soak").
    public static let server = HeapPolicy(mmapThreshold: 256 << 10, arenaMax: nil)

    /// What could not be set.
    public struct Refused: Error, Equatable, CustomStringConvertible {
        public let setting: String
        public var description: String { "the C library refused \(setting)" }
    }

    /// Sets what the policy names (a setting left nil is left as it is). Throws where the C library refuses a
    /// setting, or is not glibc and the policy names one.
    public func apply() throws {
        if let mmapThreshold, reel_heap_set_mmap_threshold(mmapThreshold) == 0 {
            throw Refused(setting: "mmap-threshold=\(mmapThreshold)")
        }
        if let arenaMax, reel_heap_set_arena_max(Int32(clamping: arenaMax)) == 0 {
            throw Refused(setting: "arenas=\(arenaMax)")
        }
    }

    /// `system`, or comma-separated settings: `mmap-threshold=1M` (bytes; suffix K or M), `arenas=2`.
    public init(parsing text: String) throws {
        self.init()
        if text == "system" { return }
        if text.isEmpty { throw ParseError(text: text, item: text) }
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { throw ParseError(text: text, item: String(item)) }
            switch parts[0] {
            case "mmap-threshold":
                guard let bytes = Self.bytes(parts[1]), bytes > 0 else { throw ParseError(text: text, item: String(item)) }
                mmapThreshold = bytes
            case "arenas":
                guard let count = Int(parts[1]), count > 0 else { throw ParseError(text: text, item: String(item)) }
                arenaMax = count
            default:
                throw ParseError(text: text, item: String(item))
            }
        }
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let text: String, item: String
        public var description: String {
            "heap policy '\(text)': cannot read '\(item)' (expected system, or mmap-threshold=BYTES[K|M] and/or "
                + "arenas=N, comma-separated)"
        }
    }

    public var description: String {
        var items: [String] = []
        if let mmapThreshold {
            items.append("mmap-threshold=" + (mmapThreshold % (1 << 20) == 0 ? "\(mmapThreshold >> 20)M"
                : mmapThreshold % (1 << 10) == 0 ? "\(mmapThreshold >> 10)K" : "\(mmapThreshold)"))
        }
        if let arenaMax { items.append("arenas=\(arenaMax)") }
        return items.isEmpty ? "system" : items.joined(separator: ",")
    }

    private static func bytes(_ text: String) -> Int? {
        let scale = text.hasSuffix("K") ? 1 << 10 : text.hasSuffix("M") ? 1 << 20 : 1
        let digits = scale == 1 ? Substring(text) : text.dropLast()
        return Int(digits).flatMap { $0.multipliedReportingOverflow(by: scale).overflow ? nil : $0 * scale }
    }
}
