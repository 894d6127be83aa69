import Foundation
import ReelCore
import ReelModels

extension ModelInspection {
    /// The report `reel inspect DIR` prints.
    public func report(geometry: BlockGeometry, schedule: StreamingSchedule = .longLive, dtype: DType = .bf16,
                       quantization: LinearQuantization? = nil, kvCache: KVCacheStorage = .model) -> String {
        var lines = ["\(folder.path): \(folder.kind.rawValue)"]
        if let base = folder.base { lines.append("base: \(base) (supplies the parts the folder lacks)") }
        if folder.files.ema {
            lines.append("generator: the EMA weights (generator_ema), as the checkpoint's authors run it")
        }
        lines.append("found:" + (parts.isEmpty ? " nothing Reel reads" : ""))
        if !folder.modelFoldersInside.isEmpty {
            lines.append("  model folders inside: " + folder.modelFoldersInside.joined(separator: ", "))
        }
        let width = parts.map { $0.part.role.rawValue.count }.max() ?? 0
        for r in parts {
            let role = r.part.role.rawValue.padding(toLength: width, withPad: " ", startingAt: 0)
            lines.append("  \(role)  \(folder.shortName(r.part))")
            let pad = String(repeating: " ", count: width + 4)
            if let problem = r.problem {
                lines.append(pad + "UNREADABLE: \(problem)")
                continue
            }
            var what = [r.format, r.layout].filter { !$0.isEmpty }
            if r.parameters > 0 {
                let types = r.storedTypes.sorted { $0.value > $1.value }.map { $0.key }.joined(separator: "+")
                what.append("\(MemoryEstimate.grouped(r.parameters)) parameters, \(types)")
            }
            lines.append(pad + what.joined(separator: ", "))
            if !r.architecture.isEmpty { lines.append(pad + r.architecture) }
        }
        if let config = folder.ditConfig, let heads = config.heads {
            lines.append("  heads from config.json: \(heads)")
        }
        let missing = folder.missing
        lines.append("missing: " + (missing.isEmpty ? "nothing"
            : missing.map { "\($0.rawValue) (\(ModelFolder.expected($0)))" }.joined(separator: "; ")))
        if folder.kind.needsBase && folder.base == nil {
            lines.append("  a \(folder.kind.rawValue) holds only the DiT: give its \(folder.kind.baseName) base folder with --base DIR")
        }
        for p in problems { lines.append("problem: \(p)") }
        if let e = estimate(geometry: geometry, schedule: schedule, dtype: dtype, quantization: quantization, kvCache: kvCache) {
            lines.append("device memory at \(geometry.width)x\(geometry.height), \(dtype)"
                         + (quantization.map { " (\($0.layers == .allLinears ? "block linears" : "FFN") in \($0.format.name))" } ?? "")
                         + (kvCache == .fp8 ? " (KV cache in FP8)" : "") + ", "
                + "attention window \(schedule.attentionFrames) latent frames:")
            let w = e.items.map(\.name.count).max() ?? 0
            for item in e.items {
                lines.append("  " + item.name.padding(toLength: w, withPad: " ", startingAt: 0)
                    + "  " + Self.bytes(item.bytes).leftPadded(to: 9) + "  " + item.detail)
            }
            lines.append("  total \(Self.bytes(e.total)); without the text encoder \(Self.bytes(e.withoutTextEncoder))")
        }
        return lines.joined(separator: "\n")
    }

    /// "9.57 GB", "12.3 MB".
    static func bytes(_ n: Double) -> String {
        n >= 1e9 ? String(format: "%.2f GB", n / 1e9) : String(format: "%.1f MB", n / 1e6)
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}

