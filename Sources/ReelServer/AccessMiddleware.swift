import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// The request context of `reel serve`: a WebSocket-capable context that knows the client's address (the
/// key of its rate limits).
public struct ReelRequestContext: RequestContext, WebSocketRequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    public let remoteAddress: SocketAddress?
    /// The connection (a WebSocket's is closed by force if its close handshake hangs).
    let channel: any Channel

    public init(source: Source) {
        coreContext = .init(source: source)
        webSocket = .init()
        remoteAddress = source.channel.remoteAddress
        channel = source.channel
    }

    /// The client as rate limits count it: its IP address (behind a reverse proxy, the proxy's).
    var client: String { remoteAddress?.ipAddress ?? "unknown" }
}

/// Applies an `AccessPolicy` to every HTTP request and WebSocket upgrade, in this order: a browser's origin (403),
/// the client's rate (429), a CORS preflight (answered here), the key (401).
struct AccessMiddleware: RouterMiddleware {
    typealias Context = ReelRequestContext
    let policy: AccessPolicy
    let limiter: ClientRateLimiter
    let metrics: Metrics

    init(policy: AccessPolicy, metrics: Metrics) {
        self.policy = policy
        limiter = ClientRateLimiter(rate: policy.requestsPerSecond, burstSeconds: policy.burstSeconds)
        self.metrics = metrics
    }

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        let origin = request.headers[.origin]
        var cors: HTTPFields = [:]
        if let origin {
            guard policy.allowsAll(origins: origin, host: request.head.authority) else {
                metrics.add("reel_requests_forbidden_total")
                throw APIError(.forbidden, "origin_not_allowed",
                               "pages from \(origin) may not use this server; allow them with "
                                   + "`reel serve --allow-origin \(origin)`")
            }
            cors = [.accessControlAllowOrigin: origin, .vary: "Origin"]
        }
        guard limiter.take(context.client) else {
            metrics.add("reel_requests_rate_limited_total")
            throw APIError(.tooManyRequests, "rate_limited",
                           "more than \(Self.figure(policy.requestsPerSecond)) requests a second from \(context.client); "
                               + "slow down and try again", headers: [.retryAfter: "1"] + cors)
        }
        if request.method == .options, origin != nil, request.headers[.accessControlRequestMethod] != nil {
            cors[.accessControlAllowMethods] = "GET, POST, DELETE"
            cors[.accessControlAllowHeaders] = "Authorization, Content-Type"
            cors[.accessControlMaxAge] = "600"
            return Response(status: .noContent, headers: cors)
        }
        if policy.needsKey(request.uri.path) {
            let presented = Self.bearer(request.headers[.authorization])
                ?? (request.uri.path == "/v1/ws" ? request.uri.queryParameters["key"].map(String.init) : nil)
            guard let presented, policy.accepts(presented) else {
                metrics.add("reel_requests_unauthorized_total")
                let how = "send `Authorization: Bearer KEY` (a WebSocket may pass ?key=KEY instead)"
                throw APIError(.unauthorized, "unauthorized",
                               presented == nil ? "this server needs its API key: " + how : "the API key is wrong",
                               headers: [.wwwAuthenticate: "Bearer realm=\"reel\""] + cors)
            }
        }
        do {
            var response = try await next(request, context)
            for field in cors { response.headers[field.name] = field.value }
            return response
        } catch let error as APIError where !cors.isEmpty {
            throw APIError(error.status, error.code, error.message, headers: error.headers + cors)
        }
    }

    /// The credentials of `Authorization: Bearer KEY`.
    static func bearer(_ header: String?) -> String? {
        guard let header, header.count > 7, header.prefix(7).lowercased() == "bearer " else { return nil }
        return String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    static func figure(_ x: Double) -> String { x == x.rounded() ? String(Int(x)) : String(x) }
}

extension HTTPFields {
    static func + (a: HTTPFields, b: HTTPFields) -> HTTPFields {
        var sum = a
        for field in b { sum[field.name] = field.value }
        return sum
    }
}
