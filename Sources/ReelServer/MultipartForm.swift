import Foundation

/// A `multipart/form-data` body (RFC 7578) split into its parts, as browsers' `FormData` and `curl -F` send it:
///
///     --BOUNDARY\r\n
///     Content-Disposition: form-data; name="request"\r\n
///     \r\n
///     {"prompt": "..."}\r\n
///     --BOUNDARY\r\n
///     Content-Disposition: form-data; name="input"; filename="clip.mp4"\r\n
///     Content-Type: video/mp4\r\n
///     \r\n
///     <bytes>\r\n
///     --BOUNDARY--\r\n
///
/// The boundary comes from the Content-Type header's `boundary` parameter. At most `maxParts` parts, each with
/// at most 8 KiB of headers; anything malformed is a `bad_upload` error.
struct MultipartForm {
    struct Part {
        /// The form field's name and, for a file, its name as sent.
        var name: String
        var filename: String?
        var contentType: String?
        var body: ArraySlice<UInt8>
    }

    static let maxParts = 16

    let parts: [Part]

    func part(_ name: String) -> Part? { parts.first { $0.name == name } }

    init(_ body: [UInt8], contentType: String) throws(APIError) {
        guard let boundary = Self.parameter("boundary", in: contentType), (1...70).contains(boundary.utf8.count) else {
            throw Self.bad("the Content-Type has no boundary parameter")
        }
        let delimiter = Array("--\(boundary)".utf8), crlf: [UInt8] = [13, 10]
        guard var i = Self.find(delimiter, in: body, from: 0) else { throw Self.bad("no part starts with the boundary") }
        var parts: [Part] = []
        while true {
            i += delimiter.count
            if body[i...].starts(with: [45, 45]) { break }   // "--": the last delimiter
            guard body[i...].starts(with: crlf) else { throw Self.bad("a boundary is not followed by a line break") }
            i += 2
            guard let headersEnd = Self.find(crlf + crlf, in: body, from: i, within: 8192) else {
                throw Self.bad("a part's headers do not end (or are longer than 8 KiB)")
            }
            var part = Part(name: "", body: [])
            for line in String(decoding: body[i..<headersEnd], as: UTF8.self).components(separatedBy: "\r\n") {
                let pieces = line.split(separator: ":", maxSplits: 1)
                guard pieces.count == 2 else { continue }
                let value = pieces[1].trimmingCharacters(in: .whitespaces)
                switch pieces[0].lowercased() {
                case "content-disposition":
                    part.name = Self.parameter("name", in: value) ?? ""
                    part.filename = Self.parameter("filename", in: value)
                case "content-type": part.contentType = value.lowercased()
                default: break
                }
            }
            let start = headersEnd + 4
            guard let end = Self.find(crlf + delimiter, in: body, from: start) else {
                throw Self.bad("part '\(part.name)' does not end with the boundary (a truncated upload?)")
            }
            part.body = body[start..<end]
            parts.append(part)
            guard parts.count <= Self.maxParts else { throw Self.bad("more than \(Self.maxParts) parts") }
            i = end + 2
        }
        self.parts = parts
    }

    static func bad(_ message: String) -> APIError { APIError(.badRequest, "bad_upload", "multipart/form-data: " + message) }

    /// A `key=value` or `key="value"` parameter of a header value (`; `-separated).
    static func parameter(_ key: String, in header: String) -> String? {
        for item in header.split(separator: ";").dropFirst() {
            let pair = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, pair[0].lowercased() == key else { continue }
            var value = pair[1]
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            return value
        }
        return nil
    }

    /// The first index of `needle` in `haystack` at or after `from` (and, with `within`, before `from + within`).
    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int, within: Int? = nil) -> Int? {
        guard let first = needle.first else { return nil }
        let last = min(haystack.count - needle.count, within.map { from + $0 } ?? Int.max)
        guard from <= last else { return nil }
        return haystack.withUnsafeBufferPointer { h in
            var i = from
            while i <= last {
                if h[i] == first {
                    var j = 1
                    while j < needle.count && h[i + j] == needle[j] { j += 1 }
                    if j == needle.count { return i }
                }
                i += 1
            }
            return nil
        }
    }
}
