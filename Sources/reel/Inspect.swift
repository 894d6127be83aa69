import ArgumentParser
import Foundation
import ReelCPU
import ReelIO

/// `reel inspect`: the tensors of weight files, without loading them.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the tensors of weight files: keys (sorted), dtypes, shapes, parameter counts.",
        discussion: """
        Reads safetensors files, PyTorch .pt/.pth zip checkpoints and sharded \
        *.safetensors.index.json sets; the format is detected from the content. Nested checkpoint \
        dictionaries are shown as "."-joined keys (generator.model.blocks.0...).
        """
    )

    @Argument(help: "Weight files to inspect.")
    var files: [String]

    @Option(help: "Show only keys that contain this text.")
    var filter: String?

    @Flag(help: "Print only the summary line of each file.")
    var summary = false

    @Flag(help: "Read every tensor and print its min, max, mean, RMS and count of NaN/Inf values.")
    var stats = false

    mutating func validate() throws {
        if files.isEmpty { throw ValidationError("Name at least one weight file.") }
        if summary && stats { throw ValidationError("--summary prints no tensors; drop it to see --stats.") }
    }

    func run() throws {
        var failures = 0
        var total = 0
        for path in files {
            do {
                let file = try WeightFiles.open(path)
                total += try printFile(file)
            } catch {
                failures += 1
                printError(error)
            }
        }
        if files.count > 1 && failures < files.count {
            print("total: \(Self.grouped(total)) parameters in \(files.count - failures) file(s)")
        }
        if failures > 0 { throw ExitCode.failure }
    }

    /// Prints one file and returns the parameter count of the keys shown.
    private func printFile(_ file: any WeightFile) throws -> Int {
        let keys = filter.map { f in file.keys.filter { $0.contains(f) } } ?? file.keys
        var rows: [(key: String, dtype: String, shape: String, stats: String)] = []
        let cpu = stats ? CPUBackend() : nil
        var parameters = 0
        for key in keys {
            let info = try file.info(key)
            parameters += info.parameterCount
            let dtype = info.storedType == info.dtype.rawValue ? info.dtype.rawValue : "\(info.dtype) (\(info.storedType))"
            let line = try cpu.map { Self.statistics(try file.tensor(key, on: $0, as: .f32).toFloats()) } ?? ""
            rows.append((key, dtype, info.shape.description, line))
        }
        let shown = filter == nil ? "" : " matching '\(filter!)'"
        print("\(file.path): \(file.format), \(keys.count) \(keys.count == 1 ? "tensor" : "tensors")\(shown), \(Self.grouped(parameters)) parameters")
        if summary { return parameters }
        for (k, v) in file.metadata.sorted(by: { $0.key < $1.key }) where filter.map({ k.contains($0) }) ?? true {
            print("  metadata \(k) = \(v.count > 200 ? String(v.prefix(200)) + "..." : v)")
        }
        let keyWidth = rows.map(\.key.count).max() ?? 0
        let dtypeWidth = rows.map(\.dtype.count).max() ?? 0
        let shapeWidth = rows.map(\.shape.count).max() ?? 0
        for r in rows {
            // The shape column is padded only when the stats column follows it.
            print("  " + r.key.padding(toLength: keyWidth, withPad: " ", startingAt: 0) + "  "
                + r.dtype.padding(toLength: dtypeWidth, withPad: " ", startingAt: 0) + "  "
                + (stats ? r.shape.padding(toLength: shapeWidth, withPad: " ", startingAt: 0) + "  " + r.stats : r.shape))
        }
        return parameters
    }

    /// "min -0.1 max 0.2 mean 0.001 rms 0.05" over the finite values, plus the count of the others.
    static func statistics(_ v: [Float]) -> String {
        var lo = Float.infinity, hi = -Float.infinity, sum = 0.0, squares = 0.0, finite = 0
        for x in v where x.isFinite {
            lo = min(lo, x); hi = max(hi, x)
            sum += Double(x); squares += Double(x) * Double(x)
            finite += 1
        }
        let bad = v.count - finite
        guard finite > 0 else { return v.isEmpty ? "(empty)" : "all \(bad) values NaN/Inf" }
        func f(_ x: Double) -> String { String(format: "%.4g", x) }
        let n = Double(finite)
        return "min \(f(Double(lo))) max \(f(Double(hi))) mean \(f(sum / n)) rms \(f((squares / n).squareRoot()))"
            + (bad > 0 ? "  \(bad) NaN/Inf" : "")
    }

    /// 1234567 -> "1,234,567".
    static func grouped(_ n: Int) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, d) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(d)
        }
        return out
    }
}
