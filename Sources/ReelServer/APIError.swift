import Foundation
import Hummingbird
import ReelCore

/// An error answered to a client: an HTTP status, a stable code and a message a person can act on.
/// Over HTTP it is `{"error": {"code", "message"}}`; over the WebSocket `{"type": "error", "code", "message"}`.
public struct APIError: Error, HTTPResponseError, Encodable, Sendable, Equatable {
    public let status: HTTPResponse.Status
    public let code: String
    public let message: String
    /// Header fields of the HTTP answer (`WWW-Authenticate`, `Retry-After`, CORS).
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, headers: HTTPFields = [:]) {
        self.status = status; self.code = code; self.message = message; self.headers = headers
    }

    public static func badJSON(_ detail: String) -> APIError { APIError(.badRequest, "bad_json", detail) }
    public static func badRequest(_ message: String) -> APIError { APIError(.badRequest, "bad_request", message) }
    public static func unknownOption(_ name: String, known: [String]) -> APIError {
        APIError(.badRequest, "unknown_option", "unknown option '\(name)'; known options: \(known.joined(separator: ", "))")
    }
    public static func notFound(_ id: String) -> APIError { APIError(.notFound, "not_found", "no session \(id)") }

    /// The status is the HTTP answer's, not part of the body.
    private enum CodingKeys: String, CodingKey { case code, message }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = Response.json(["error": self], status: status)
        for field in headers { response.headers[field.name] = field.value }
        return response
    }

    /// The error as a WebSocket message.
    var socketMessage: String { JSON.text(of: ["type": "error", "code": code, "message": message]) }
}
