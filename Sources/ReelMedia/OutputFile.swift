import Foundation
import ReelCore

/// A file created (or truncated) for writing, with errors that name the path.
final class OutputFile {
    let path: String
    private let handle: FileHandle

    init(path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty, !FileManager.default.fileExists(atPath: dir) {
            throw ReelError.badFile(path: path, message: "folder \(dir) does not exist")
        }
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let h = FileHandle(forWritingAtPath: path) else {
            throw ReelError.badFile(path: path, message: "cannot create the file (check the folder exists and is writable)")
        }
        self.path = path
        handle = h
    }

    func write(_ bytes: some Collection<UInt8>) throws {
        do { try handle.write(contentsOf: Data(bytes)) } catch {
            throw ReelError.badFile(path: path, message: "write failed: \(error.localizedDescription)")
        }
    }

    func close() throws {
        do { try handle.close() } catch {
            throw ReelError.badFile(path: path, message: "close failed: \(error.localizedDescription)")
        }
    }
}
