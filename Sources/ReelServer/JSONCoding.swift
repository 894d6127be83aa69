import Foundation
import Hummingbird
import NIOCore
import ReelCore

// JSON in and out of the API. Requests and control messages are `Decodable` types whose `init(from:)`
// checks the shape field by field and throws the `APIError` a client is told; answers are `Encodable`
// types written as `JSON.text(of:)` writes them (compact, sorted keys).

extension Decodable {
    /// `data` decoded as this type. Malformed JSON is `bad_json` quoting the parser; a wrong shape is
    /// the `APIError` this type's `init(from:)` throws.
    init(json data: Data) throws(APIError) {
        do {
            self = try JSONDecoder().decode(Self.self, from: data)
        } catch let error as APIError {
            throw error
        } catch let DecodingError.dataCorrupted(context) {
            throw .badJSON("malformed JSON: " + (context.underlyingError.map { "\($0)" } ?? context.debugDescription))
        } catch {
            throw .badJSON("malformed JSON: \(error)")
        }
    }
}

extension Request {
    /// The JSON body decoded as `T`: hummingbird's `decode(as:context:)` with the API's errors and limit
    /// (its own answer HTTPErrors in its words, past the context's upload limit). A body over `limit`
    /// bytes is 413 `body_too_large`; the rest as `init(json:)`.
    mutating func decode<T: Decodable>(as type: T.Type, limit: Int) async throws -> T {
        let body = try await collectBody(limit: limit, tooLarge: APIError(
            .contentTooLarge, "body_too_large", "the request body is larger than \(limit) bytes"))
        return try T(json: Data(body.readableBytesView))
    }

    /// The body, at most `limit` bytes: `tooLarge` when it is longer, at once when its `Content-Length` says so
    /// (without reading it: a client announcing a terabyte is not waited for); 400 `bad_body` when it cannot be read
    /// (malformed chunks).
    mutating func collectBody(limit: Int, tooLarge: APIError) async throws -> ByteBuffer {
        if let length = headers[.contentLength].flatMap(Int.init), length > limit { throw tooLarge }
        do {
            return try await collectBody(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw tooLarge
        } catch {
            throw APIError(.badRequest, "bad_body", "the request body could not be read (\(error))")
        }
    }
}

extension Response {
    /// A JSON answer.
    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(string: JSON.text(of: value))))
    }
}

extension Decoder {
    /// The container of a JSON object that may hold only `Key`'s keys: anything but an object is
    /// `notAnObject`, the first other key `unknownKey(name)`.
    func object<Key: CodingKey>(keyedBy: Key.Type, notAnObject: APIError,
                                unknownKey: (String) -> APIError) throws(APIError) -> KeyedDecodingContainer<Key> {
        guard let all = try? container(keyedBy: AnyKey.self), let known = try? container(keyedBy: Key.self) else {
            throw notAnObject
        }
        if let unknown = all.allKeys.first(where: { Key(stringValue: $0.stringValue) == nil }) {
            throw unknownKey(unknown.stringValue)
        }
        return known
    }
}

extension KeyedDecodingContainer {
    /// The value of a field that may be left out: nil when `key` is absent. A value of another type
    /// (null included) is `wrongType`, unless decoding it threw an `APIError` of its own.
    func field<T: Decodable>(_ type: T.Type, _ key: Key, else wrongType: @autoclosure () -> APIError) throws(APIError) -> T? {
        guard contains(key) else { return nil }
        do {
            return try decode(T.self, forKey: key)
        } catch let own as APIError {
            throw own
        } catch {
            throw wrongType()
        }
    }
}

/// Any key of an object, to find the ones a type does not know.
private struct AnyKey: CodingKey {
    let stringValue: String
    init(stringValue: String) { self.stringValue = stringValue }
    var intValue: Int? { nil }
    init?(intValue: Int) { nil }
}
