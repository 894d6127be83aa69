import Foundation

/// A line of progress for a person, on standard error (standard output stays for data and tables).
func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

/// How every command reports an error it cannot go on from: `error: <what the user needs to fix>`.
func printError(_ error: Any) { log("error: \(error)") }
