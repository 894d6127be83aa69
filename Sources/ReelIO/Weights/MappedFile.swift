#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ReelCore

/// A whole file mapped read-only into memory (`mmap`, `PROT_READ`, `MAP_PRIVATE`).
///
/// The mapping lives as long as this object: every tensor that views the file holds a
/// `MappedRegion`, which holds the `MappedFile`, so the file is unmapped when the last tensor and
/// the weight file object are gone. Pages are read from disk on first touch, so opening a 30 GB
/// checkpoint costs nothing until its tensors are used.
final class MappedFile: @unchecked Sendable {
    /// The file's path, for error messages.
    let path: String
    /// Start of the mapping; nil for an empty file (mmap cannot map zero bytes).
    let base: UnsafeRawPointer?
    /// Size of the file in bytes.
    let size: Int

    init(path: String) throws {
        self.path = path
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below as not a file).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 { throw ReelError.badFile(path: path, message: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 {
            throw ReelError.badFile(path: path, message: "cannot stat: \(String(cString: strerror(errno)))")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw ReelError.badFile(path: path, message: "is a directory, expected a weight file")
        }
        if (st.st_mode & S_IFMT) != S_IFREG {
            throw ReelError.badFile(path: path, message: "is not a regular file")
        }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw ReelError.badFile(path: path, message: "cannot map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// The bytes `offset ..< offset + count`, which the caller has checked lie inside the file.
    func bytes(at offset: Int, count: Int) -> UnsafeRawBufferPointer {
        precondition(offset >= 0 && count >= 0 && offset <= size - count, "unchecked range into \(path)")
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }

    /// Whether `offset ..< offset + count` lies inside the file (overflow-safe).
    func contains(offset: Int, count: Int) -> Bool {
        offset >= 0 && count >= 0 && offset <= size && count <= size - offset
    }

    /// A little-endian unsigned integer of `width` bytes at `offset`, nil past the end.
    func littleEndian(at offset: Int, width: Int) -> UInt64? {
        guard contains(offset: offset, count: width) else { return nil }
        let b = bytes(at: offset, count: width)
        var v: UInt64 = 0
        for i in stride(from: width - 1, through: 0, by: -1) { v = v << 8 | UInt64(b[i]) }
        return v
    }
}

/// Part of a memory-mapped weight file, handed to a `HostBackend` as tensor storage without a copy.
///
/// The pages are mapped read-only: tensors on a `MappedRegion` are inputs to ops, never the
/// destination of `Backend.copy(_:into:axis:at:)` or `Backend.fill(_:with:)`. Load with an explicit
/// `as:` dtype, or copy, to get a tensor you can write into.
public final class MappedRegion: HostStorage, @unchecked Sendable {
    private let file: MappedFile
    public let baseAddress: UnsafeMutableRawPointer
    public let byteCount: Int

    /// `start ..< start + byteCount` must lie inside `file`'s mapping.
    init(file: MappedFile, start: UnsafeRawPointer, byteCount: Int) {
        self.file = file
        // The mapping is PROT_READ; the mutable pointer is what HostStorage asks for, never written.
        self.baseAddress = UnsafeMutableRawPointer(mutating: start)
        self.byteCount = byteCount
    }

    /// The path of the file these bytes come from.
    public var path: String { file.path }
}
