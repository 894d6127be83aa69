import Foundation

/// Runs the built `reel` (debug) and curl for the tests that check the command line end to end.
enum CommandRunner {
    static let executable = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug/reel").path
    static let curlPath = "/usr/bin/curl"

    /// `reel arguments...` to its end: its exit status and standard error (standard output dropped).
    /// `environment`: variables set over this process's.
    static func reel(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, errors: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let errors = Pipe()
        p.standardError = errors
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        p.waitForExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// curl's output, or nil when it fails (the server not up yet).
    static func curl(_ arguments: [String]) throws -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: curlPath)
        p.arguments = ["-sf", "--max-time", "10"] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitForExit()
        return p.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
    }
}
