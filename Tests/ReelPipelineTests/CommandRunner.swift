import Foundation

/// Runs the built `reel` (debug) and curl for the tests that check the command line end to end.
enum CommandRunner {
    static let executable = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug/reel").path
    static let curlPath = "/usr/bin/curl"

    /// `reel arguments...` to its end: its exit status and standard error (standard output dropped).
    /// `environment`: variables set over this process's.
    static func reel(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, errors: String) {
        let run = try reelWithOutput(arguments, environment: environment, keepOutput: false)
        return (run.status, run.errors)
    }

    /// `reel arguments...` to its end: its exit status, standard output (empty with `keepOutput` false) and standard
    /// error. Standard error is read to its end on a thread of its own while standard output is read here, so
    /// neither pipe fills and blocks the process.
    static func reelWithOutput(_ arguments: [String], environment: [String: String] = [:], keepOutput: Bool = true) throws
        -> (status: Int32, output: String, errors: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let errors = Pipe(), output = Pipe()
        p.standardError = errors
        p.standardOutput = keepOutput ? output : FileHandle.nullDevice
        try p.run()
        let errorData = ErrorReader(errors.fileHandleForReading)
        let outputData = keepOutput ? output.fileHandleForReading.readDataToEndOfFile() : Data()
        p.waitForExit()
        return (p.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData.wait(), as: UTF8.self))
    }

    /// Reads a file handle to its end on a thread of its own.
    final class ErrorReader: @unchecked Sendable {
        private var data = Data()
        private let done = DispatchSemaphore(value: 0)
        init(_ handle: FileHandle) {
            Thread.detachNewThread { [self] in
                data = handle.readDataToEndOfFile()
                done.signal()
            }
        }
        func wait() -> Data {
            done.wait()
            return data
        }
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
