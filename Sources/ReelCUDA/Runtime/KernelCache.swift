import Foundation
import ReelCore

/// A stable 128-bit content hash (two FNV-1a 64 lanes with different offsets). Used to key compiled
/// kernels on disk; it is not a cryptographic hash and needs not be one.
public enum SourceHash {
    public static func hex(_ parts: [String]) -> String {
        var a: UInt64 = 0xCBF2_9CE4_8422_2325
        var b: UInt64 = 0x84222325_CBF29CE4
        for part in parts {
            for byte in part.utf8 {
                a = (a ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
                b = (b ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
                b = (b << 7) | (b >> 57)
            }
            // Separator so ["ab", "c"] and ["a", "bc"] differ.
            a = (a ^ 0xFF) &* 0x0000_0100_0000_01B3
            b = (b ^ 0xFF) &* 0x0000_0100_0000_01B3
        }
        return String(format: "%016llx%016llx", a, b)
    }
}

/// What a compiled kernel module depends on; equal keys mean the cached CUBIN can be reused.
public struct KernelCacheKey: Hashable, Sendable {
    /// Kernel file name without extension ("elementwise").
    public var name: String
    /// Hash of the source, every header it may include, and the compile options.
    public var sourceHash: String
    /// Target architecture, "sm_90".
    public var arch: String
    /// NVRTC version, "13.0".
    public var compilerVersion: String

    public init(name: String, source: String, headers: [(String, String)], options: [String], arch: String, compilerVersion: String) {
        self.name = name
        self.sourceHash = SourceHash.hex([source] + headers.flatMap { [$0.0, $0.1] } + options)
        self.arch = arch
        self.compilerVersion = compilerVersion
    }

    /// File name in the cache folder: every part of the key is in it.
    public var fileName: String { "\(name)-\(arch)-nvrtc\(compilerVersion)-\(sourceHash).cubin" }
}

/// The CUDA C sources of the kernels, shipped as the ReelCUDA target's resources
/// (`Reel_ReelCUDA.resources/Kernels/*.cu` beside the `reel` binary).
public struct KernelSources: Sendable {
    public let directory: String

    /// Searches `REEL_KERNELS_PATH`, the resource bundle beside the executable, the bundle in the
    /// build folder, and this source checkout, in that order.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment,
                              executable: String = KernelSources.executablePath()) throws -> KernelSources {
        var candidates: [String] = []
        if let p = environment["REEL_KERNELS_PATH"] { candidates.append(p) }
        let exeDir = (executable as NSString).deletingLastPathComponent
        candidates.append(exeDir + "/Reel_ReelCUDA.resources/Kernels")
        candidates.append(exeDir + "/Reel_ReelCUDA.resources")
        // Source checkout: Sources/ReelCUDA/Runtime/KernelCache.swift -> Sources/ReelCUDA/Kernels.
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(here.appendingPathComponent("Kernels").path)
        for c in candidates where FileManager.default.fileExists(atPath: c + "/common.cuh") {
            return KernelSources(directory: c)
        }
        throw ReelError.library(name: "ReelCUDA", message: "kernel sources not found; looked in \(candidates.joined(separator: ", ")). "
            + "Copy the Reel_ReelCUDA.resources folder next to the reel binary (scripts/gpu/build.sh does) or set REEL_KERNELS_PATH.")
    }

    public static func executablePath() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments.first ?? "."
    }

    public func source(_ name: String) throws -> String {
        let path = directory + "/" + name
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ReelError.library(name: "ReelCUDA", message: "cannot read kernel source \(path)")
        }
        return text
    }

    /// Headers every kernel may include.
    public func headers() throws -> [(String, String)] {
        [("common.cuh", try source("common.cuh"))]
    }
}

/// Compiled kernels cached on disk by `KernelCacheKey`, so NVRTC runs once per (source, arch, version).
public struct KernelDiskCache: Sendable {
    public let directory: String

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let d = environment["REEL_CACHE_DIR"] { directory = d + "/kernels" }
        else if let x = environment["XDG_CACHE_HOME"] { directory = x + "/reel/kernels" }
        else if let h = environment["HOME"] { directory = h + "/.cache/reel/kernels" }
        else { directory = NSTemporaryDirectory() + "reel-kernels" }
    }

    public init(directory: String) { self.directory = directory }

    public func load(_ key: KernelCacheKey) -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: directory + "/" + key.fileName), !data.isEmpty else { return nil }
        return [UInt8](data)
    }

    /// Best effort: a read-only home only costs a recompile next time.
    public func store(_ key: KernelCacheKey, _ bytes: [UInt8]) {
        let fm = FileManager.default
        try? fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let tmp = directory + "/.\(key.fileName).\(getpid()).tmp"
        guard fm.createFile(atPath: tmp, contents: Data(bytes)) else { return }
        _ = rename(tmp, directory + "/" + key.fileName)
    }
}
