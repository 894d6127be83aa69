import Foundation
import ReelCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Buffered reads from a file descriptor (a file, a pipe, stdin) with an optional stall timeout: a
/// read that waits longer than the time left before the deadline throws. Memory stays flat: one
/// 64 KiB buffer, bytes copied straight into the caller's storage.
final class DescriptorReader {
    let source: String
    private let fd: Int32
    private let ownsDescriptor: Bool
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)
    private var start = 0, end = 0
    private var closed = false
    /// True once a read gave up at the stall timeout.
    private(set) var stalled = false
    /// Seconds a read may wait for data; nil waits for ever.
    let stallTimeout: Double?
    /// When the current wait started (set by `beginWait`); the timeout counts from here.
    private var waitStarted = DispatchTime.now()

    init(fd: Int32, source: String, ownsDescriptor: Bool, stallTimeout: Double?) throws {
        if let t = stallTimeout {
            guard t > 0, t.isFinite else {
                throw ReelError.invalidArgument(op: "VideoInput", message: "stall timeout must be positive, got \(t)")
            }
        }
        self.fd = fd
        self.source = source
        self.ownsDescriptor = ownsDescriptor
        self.stallTimeout = stallTimeout
    }

    /// Opens `path` for reading; the error names it.
    convenience init(path: String, stallTimeout: Double?) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw ReelError.badFile(path: path, message: "cannot open: \(String(cString: strerror(errno)))")
        }
        try self.init(fd: fd, source: path, ownsDescriptor: true, stallTimeout: stallTimeout)
    }

    deinit { close() }

    func close() {
        guard !closed else { return }
        closed = true
        if ownsDescriptor { systemClose(fd) }
    }

    /// Starts the stall clock (once per frame: a frame that trickles in slowly still has N seconds).
    func beginWait() { waitStarted = .now() }

    /// Refills the buffer; false at the end of the input.
    private func fill() throws -> Bool {
        guard !closed else { return false }
        start = 0
        end = 0
        while true {
            if let timeout = stallTimeout {
                let waited = Double(DispatchTime.now().uptimeNanoseconds - waitStarted.uptimeNanoseconds) / 1e9
                let left = timeout - waited
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let r = left <= 0 ? 0 : poll(&p, 1, Int32(min(left * 1000, 1e9).rounded(.up)))
                if r == 0 {
                    stalled = true
                    throw ReelError.badFile(path: source, message: "no frame for \(timeout) s (stall timeout)")
                }
                if r < 0 && errno == EINTR { continue }
            }
            let n = buffer.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
            if n > 0 { end = n; return true }
            if n == 0 { return false }
            if errno == EINTR || errno == EAGAIN { continue }
            throw ReelError.badFile(path: source, message: "read failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Fills `out[offset..<offset+count]`; returns the bytes read, less than `count` only at the end.
    func read(into out: inout [UInt8], offset: Int, count: Int) throws -> Int {
        var done = 0
        while done < count {
            if start == end, try !fill() { break }
            let n = min(count - done, end - start)
            out.withUnsafeMutableBufferPointer { dst in
                buffer.withUnsafeBufferPointer { src in
                    dst.baseAddress!.advanced(by: offset + done)
                        .update(from: src.baseAddress!.advanced(by: start), count: n)
                }
            }
            start += n
            done += n
        }
        return done
    }

    /// A line up to "\n" (not included); nil at the end before any byte. Throws when longer than
    /// `limit` bytes or cut off by the end of the input.
    func readLine(limit: Int, what: String) throws -> [UInt8]? {
        var line: [UInt8] = []
        while true {
            if start == end, try !fill() {
                if line.isEmpty { return nil }
                throw ReelError.badFile(path: source, message: "truncated \(what) (\(line.count) bytes, no newline)")
            }
            let byte = buffer[start]
            start += 1
            if byte == 0x0A { return line }
            line.append(byte)
            guard line.count <= limit else {
                throw ReelError.badFile(path: source, message: "\(what) longer than \(limit) bytes: not Y4M?")
            }
        }
    }
}

// The C calls under names the class's own methods do not shadow.
private func systemRead(_ fd: Int32, _ p: UnsafeMutableRawPointer?, _ n: Int) -> Int { read(fd, p, n) }
private func systemClose(_ fd: Int32) { _ = close(fd) }
