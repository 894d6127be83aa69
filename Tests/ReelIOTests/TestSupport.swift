import Foundation
import ReelCore
import ReelIO
import Testing

/// Fixture and scratch-file helpers shared by the ReelIO tests.
enum TestFiles {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    /// A fresh scratch folder for one test.
    static func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("reel-io-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Writes `bytes` to a scratch file and returns its path.
    static func write(_ bytes: [UInt8], name: String = "file.bin") throws -> String {
        let url = try scratch().appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }
}

/// The message of a `ReelError.badFile` thrown by `body`, or a test failure.
func badFileMessage(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    do {
        try body()
        Issue.record("expected an error", sourceLocation: sourceLocation)
        return ""
    } catch let ReelError.badFile(_, message) {
        return message
    } catch {
        Issue.record("expected ReelError.badFile, got \(error)", sourceLocation: sourceLocation)
        return ""
    }
}
