#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import ReelCore

/// Where Reel looks for the NVIDIA libraries, in order:
/// 1. `REEL_CUDA_PATH` (colon-separated folders; a folder with a `lib64` or `lib` subfolder counts too),
/// 2. `LD_LIBRARY_PATH`,
/// 3. the usual CUDA folders (`/usr/local/cuda*/targets/x86_64-linux/lib`, `/usr/local/cuda/lib64`,
///    the driver's `/usr/local/nvidia/lib64`, `/usr/lib/x86_64-linux-gnu`),
/// 4. pip-installed wheels (`site-packages/nvidia/*/lib`) of the Python installations found,
/// 5. finally the bare file name, which lets the system loader use its own cache.
public struct LibrarySearch: Sendable {
    public var environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// The folders searched, in order, without duplicates. Only folders that exist are returned.
    public func directories(fileExists: (String) -> Bool = LibrarySearch.isDirectory) -> [String] {
        var out: [String] = []
        func add(_ dir: String) {
            let d = dir.hasSuffix("/") && dir.count > 1 ? String(dir.dropLast()) : dir
            if !d.isEmpty, !out.contains(d), fileExists(d) { out.append(d) }
        }
        for root in split(environment["REEL_CUDA_PATH"]) {
            add(root)
            add(root + "/lib64")
            add(root + "/lib")
            add(root + "/targets/x86_64-linux/lib")
        }
        for dir in split(environment["LD_LIBRARY_PATH"]) { add(dir) }
        // Versioned toolkits first, newest first, then the unversioned symlink.
        for toolkit in LibrarySearch.globSorted("/usr/local", prefix: "cuda-").reversed() {
            add(toolkit + "/targets/x86_64-linux/lib")
            add(toolkit + "/lib64")
        }
        add("/usr/local/cuda/targets/x86_64-linux/lib")
        add("/usr/local/cuda/lib64")
        add("/usr/local/nvidia/lib64")
        add("/usr/lib/x86_64-linux-gnu")
        add("/usr/lib64")
        for site in sitePackages() {
            for pkg in LibrarySearch.globSorted(site + "/nvidia", prefix: "") { add(pkg + "/lib") }
        }
        return out
    }

    /// Python `site-packages` / `dist-packages` folders: active virtualenv, PYTHONPATH, pyenv,
    /// the user's and the system's installations, and virtualenvs under /opt.
    func sitePackages() -> [String] {
        var roots: [String] = []
        for p in split(environment["PYTHONPATH"]) { roots.append(p) }
        var prefixes: [String] = []
        if let venv = environment["VIRTUAL_ENV"] { prefixes.append(venv) }
        if let home = environment["HOME"] {
            prefixes.append(home + "/.local")
            for v in LibrarySearch.globSorted(home + "/.pyenv/versions", prefix: "") { prefixes.append(v) }
        }
        prefixes += ["/usr/local", "/usr"]
        for opt in LibrarySearch.globSorted("/opt", prefix: "") { prefixes.append(opt + "/.venv"); prefixes.append(opt) }
        for prefix in prefixes {
            for lib in ["lib", "lib64"] {
                for py in LibrarySearch.globSorted(prefix + "/" + lib, prefix: "python3") {
                    roots.append(py + "/site-packages")
                    roots.append(py + "/dist-packages")
                }
            }
        }
        return roots
    }

    private func split(_ value: String?) -> [String] {
        (value ?? "").split(separator: ":").map(String.init).filter { !$0.isEmpty }
    }

    static func globSorted(_ dir: String, prefix: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        return names.filter { $0.hasPrefix(prefix) }.sorted().map { dir + "/" + $0 }
    }

    public static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    /// Opens the first of `names` found in the search folders (then by bare name).
    /// Throws `ReelError.library` listing every folder tried and the variable to set.
    public func open(_ what: String, names: [String]) throws -> DynamicLibrary {
        var tried: [String] = []
        var lastError = ""
        for dir in directories() {
            for name in names {
                let path = dir + "/" + name
                guard FileManager.default.fileExists(atPath: path) else { continue }
                tried.append(path)
                switch DynamicLibrary.load(path) {
                case .success(let lib): return lib
                case .failure(let message): lastError = message
                }
            }
        }
        for name in names {
            if case .success(let lib) = DynamicLibrary.load(name) { return lib }
        }
        let searched = directories().joined(separator: ", ")
        var message = "not found (looked for \(names.joined(separator: " / ")) in: \(searched.isEmpty ? "no existing folder" : searched), and the system loader's cache)."
        if !tried.isEmpty { message += " Found but could not load \(tried.joined(separator: ", ")): \(lastError)." }
        message += " Install it or set REEL_CUDA_PATH to the folder that holds it."
        throw ReelError.library(name: what, message: message)
    }
}

/// A shared library opened with dlopen. Symbols are looked up on demand; the handle is never closed
/// (the NVIDIA libraries keep global state for the life of the process).
public final class DynamicLibrary: @unchecked Sendable {
    public let path: String
    let handle: UnsafeMutableRawPointer

    private init(path: String, handle: UnsafeMutableRawPointer) {
        self.path = path
        self.handle = handle
    }

    enum LoadResult { case success(DynamicLibrary), failure(String) }

    static func load(_ path: String) -> LoadResult {
        guard let h = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            return .failure(dlerror().map { String(cString: $0) } ?? "dlopen failed")
        }
        // Opened by bare name: report the file the loader mapped (from /proc/self/maps).
        var resolved = path
        if !path.contains("/"), let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8),
           let line = maps.split(separator: "\n").first(where: { $0.hasSuffix("/" + path) }),
           let slash = line.firstIndex(of: "/") {
            resolved = String(line[slash...])
        }
        return .success(DynamicLibrary(path: resolved, handle: h))
    }

    /// The address of `name` as a C function pointer of type `T`, or a `ReelError.library` naming it.
    public func symbol<T>(_ name: String, as type: T.Type = T.self) throws -> T {
        guard let p = dlsym(handle, name) else {
            throw ReelError.library(name: (path as NSString).lastPathComponent,
                                    message: "symbol \(name) not found; the library is older than Reel needs")
        }
        return unsafeBitCast(p, to: T.self)
    }

    /// Like `symbol`, but nil when the library lacks it (for entry points that moved between versions).
    public func optionalSymbol<T>(_ name: String, as type: T.Type = T.self) -> T? {
        dlsym(handle, name).map { unsafeBitCast($0, to: T.self) }
    }
}
