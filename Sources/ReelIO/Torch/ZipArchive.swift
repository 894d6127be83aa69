// The parts of the zip format (PKWARE APPNOTE 6.3) that PyTorch checkpoints use.
//
//   [local header | data] ...  central directory  [zip64 end record, zip64 locator]  end record
//
// End of central directory (EOCD, signature 0x06054b50, 22 bytes + comment): entry count (u16 at
// +10), directory size (u32 at +12) and offset (u32 at +16). When a field is saturated (0xFFFF /
// 0xFFFFFFFF) the zip64 locator (0x07064b50, 20 bytes just before the EOCD) points at the zip64
// end record (0x06064b50): entry count (u64 at +32), directory size (u64 at +40), offset (u64 at +48).
// Central directory entry (0x02014b50, 46 bytes + name + extra + comment): flags (+8), method (+10),
// compressed size (+20), size (+24), name length (+28), extra length (+30), comment length (+32),
// local header offset (+42); saturated sizes and offset are in the zip64 extra field (id 0x0001).
// Local header (0x04034b50, 30 bytes + name + extra; lengths at +26, +28): the data follows it.
// PyTorch stores every entry uncompressed (method 0) and pads the extra field so tensor data
// starts 64-byte aligned, which lets Reel map it without a copy. The CRC-32 (+16) is checked for
// the small entries (data.pkl, byteorder); tensor data is not read until it is used.
import ReelCore

/// One stored file inside a zip archive.
struct ZipEntry: Sendable {
    let name: String
    /// 0 = stored; anything else is compressed, which Reel does not read.
    let method: Int
    /// Offset of the entry's data in the archive file.
    let dataOffset: Int
    let compressedSize: Int
    let size: Int
    /// The CRC-32 the central directory records for the uncompressed data.
    let crc32: UInt32
}

/// The central directory of a zip archive held in a mapped file, validated against the file size.
struct ZipArchive {
    let file: MappedFile
    let entries: [String: ZipEntry]

    /// Directories larger than this are refused (a real checkpoint has one entry per storage).
    static let maxEntries = 1_000_000

    init(file: MappedFile) throws {
        self.file = file
        func bad(_ message: String) -> ReelError { .badFile(path: file.path, message: "zip: " + message) }
        func u(_ offset: Int, _ width: Int, _ what: String) throws -> Int {
            guard let v = file.littleEndian(at: offset, width: width), v <= UInt64(Int.max) else {
                throw bad("\(what) at byte \(offset) lies past the end of the file (\(file.size) bytes): truncated archive")
            }
            return Int(v)
        }

        // The EOCD is the last 0x06054b50 within the final 22 + 65535 bytes.
        guard file.size >= 22 else { throw bad("\(file.size) bytes is too short for a zip archive (truncated?)") }
        var eocd = -1
        var p = file.size - 22
        let lowest = max(0, file.size - 22 - 65_535)
        while p >= lowest {
            if file.littleEndian(at: p, width: 4) == 0x0605_4b50 { eocd = p; break }
            p -= 1
        }
        guard eocd >= 0 else { throw bad("no end-of-central-directory record: the archive is truncated or not a zip") }

        var count = try u(eocd + 10, 2, "entry count")
        var dirSize = try u(eocd + 12, 4, "directory size")
        var dirOffset = try u(eocd + 16, 4, "directory offset")
        if count == 0xFFFF || dirSize == 0xFFFF_FFFF || dirOffset == 0xFFFF_FFFF {
            let locator = eocd - 20
            guard locator >= 0, file.littleEndian(at: locator, width: 4) == 0x0706_4b50 else {
                throw bad("end record has saturated fields but no zip64 locator precedes it")
            }
            let record = try u(locator + 8, 8, "zip64 end record offset")
            guard file.littleEndian(at: record, width: 4) == 0x0606_4b50 else {
                throw bad("zip64 locator points at byte \(record), which holds no zip64 end record")
            }
            count = try u(record + 32, 8, "zip64 entry count")
            dirSize = try u(record + 40, 8, "zip64 directory size")
            dirOffset = try u(record + 48, 8, "zip64 directory offset")
        }
        guard file.contains(offset: dirOffset, count: dirSize), dirOffset + dirSize <= eocd else {
            throw bad("central directory (\(dirSize) bytes at \(dirOffset)) lies outside the archive: truncated or corrupt")
        }
        guard count <= Self.maxEntries, count <= dirSize / 46 else {
            throw bad("end record claims \(count) entries, more than a \(dirSize)-byte central directory can hold")
        }

        var entries: [String: ZipEntry] = [:]
        var at = dirOffset
        let dirEnd = dirOffset + dirSize
        for i in 0..<count {
            guard at + 46 <= dirEnd, file.littleEndian(at: at, width: 4) == 0x0201_4b50 else {
                throw bad("central directory entry \(i) at byte \(at) is missing or corrupt (truncated directory?)")
            }
            let flags = try u(at + 8, 2, "flags")
            let method = try u(at + 10, 2, "method")
            let crc = UInt32(try u(at + 16, 4, "crc-32"))
            var compressed = try u(at + 20, 4, "compressed size")
            var size = try u(at + 24, 4, "size")
            let nameLength = try u(at + 28, 2, "name length")
            let extraLength = try u(at + 30, 2, "extra length")
            let commentLength = try u(at + 32, 2, "comment length")
            var local = try u(at + 42, 4, "local header offset")
            let next = at + 46 + nameLength + extraLength + commentLength
            guard next <= dirEnd else { throw bad("central directory entry \(i) runs past the directory's end") }
            let name = String(decoding: file.bytes(at: at + 46, count: nameLength), as: UTF8.self)
            if flags & 1 != 0 { throw bad("entry '\(name)' is encrypted") }

            // zip64 extra field: the saturated values, in the order size, compressed size, offset.
            var e = at + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = try u(e, 2, "extra id"), length = try u(e + 2, 2, "extra length")
                guard e + 4 + length <= extraEnd else { throw bad("entry '\(name)' has a malformed extra field") }
                if id == 0x0001 {
                    var f = e + 4
                    func next64() throws -> Int {
                        guard f + 8 <= e + 4 + length else { throw bad("entry '\(name)' has a short zip64 extra field") }
                        defer { f += 8 }
                        return try u(f, 8, "zip64 field")
                    }
                    if size == 0xFFFF_FFFF { size = try next64() }
                    if compressed == 0xFFFF_FFFF { compressed = try next64() }
                    if local == 0xFFFF_FFFF { local = try next64() }
                }
                e += 4 + length
            }

            guard file.littleEndian(at: local, width: 4) == 0x0403_4b50 else {
                throw bad("entry '\(name)': no local header at byte \(local) (truncated or corrupt archive)")
            }
            let dataOffset = local + 30 + (try u(local + 26, 2, "local name length")) + (try u(local + 28, 2, "local extra length"))
            guard file.contains(offset: dataOffset, count: compressed), dataOffset + compressed <= dirOffset else {
                throw bad("entry '\(name)' (\(compressed) bytes at \(dataOffset)) runs past the end of the data: truncated archive")
            }
            guard entries[name] == nil else { throw bad("entry '\(name)' appears twice") }
            entries[name] = ZipEntry(name: name, method: method, dataOffset: dataOffset, compressedSize: compressed,
                                     size: size, crc32: crc)
            at = next
        }
        self.entries = entries
    }

    /// The bytes of a stored entry; compressed entries are refused.
    func data(of entry: ZipEntry) throws -> UnsafeRawBufferPointer {
        guard entry.method == 0, entry.size == entry.compressedSize else {
            throw ReelError.badFile(path: file.path, message: "zip: entry '\(entry.name)' is compressed (method \(entry.method)); "
                + "Reel reads only stored entries, as torch.save writes them: re-save the checkpoint with torch.save")
        }
        return file.bytes(at: entry.dataOffset, count: entry.size)
    }

    /// The bytes of a stored entry whose CRC-32 matches the directory's (for small entries: the
    /// check reads every byte).
    func verifiedData(of entry: ZipEntry) throws -> UnsafeRawBufferPointer {
        let bytes = try data(of: entry)
        let crc = CRC32.checksum(bytes)
        guard crc == entry.crc32 else {
            throw ReelError.badFile(path: file.path, message: "zip: entry '\(entry.name)' fails its CRC-32 check "
                + "(0x\(String(crc, radix: 16)), directory says 0x\(String(entry.crc32, radix: 16))): the file is corrupt")
        }
        return bytes
    }
}
