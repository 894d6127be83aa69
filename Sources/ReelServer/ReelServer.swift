import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import ServiceLifecycle
import UnixSignals

/// `reel serve`: the HTTP API, the WebSocket API and the web page over one `SessionManager`.
///
/// HTTP: `POST /v1/sessions` (JSON, or multipart/form-data with an input video or image: `SessionUpload`),
/// `GET /v1/sessions`, `GET|DELETE /v1/sessions/{id}`,
/// `GET /v1/sessions/{id}/video`, `/healthz`, `/metrics`, `/openapi.json`, and the page at `/`.
/// WebSocket: `/v1/ws` (see `SocketConnection` for its messages). Who may call what: `AccessPolicy`.
public struct ReelServer: Sendable {
    public let manager: SessionManager
    public var config: ServerConfiguration { manager.config }

    public init(manager: SessionManager) throws {
        self.manager = manager
        try FileManager.default.createDirectory(atPath: manager.config.recordingFolder, withIntermediateDirectories: true)
    }

    /// The router serving HTTP and WebSocket upgrades.
    public func router() -> Router<ReelRequestContext> {
        let router = Router(context: ReelRequestContext.self)
        let manager = self.manager, config = self.config, metrics = manager.metrics
        router.middlewares.add(ErrorCountingMiddleware(metrics: metrics))
        router.middlewares.add(AccessMiddleware(policy: config.access, metrics: metrics))

        router.get("/") { _, _ in WebPage.response(WebPage.html, type: "text/html; charset=utf-8") }
        router.get("/app.js") { _, _ in WebPage.response(WebPage.script, type: "text/javascript; charset=utf-8") }
        router.get("/app.css") { _, _ in WebPage.response(WebPage.style, type: "text/css; charset=utf-8") }
        router.get("/favicon.ico") { _, _ in Response(status: .noContent) }
        router.get("/openapi.json") { _, _ in WebPage.response(OpenAPI.document, type: "application/json") }
        router.get("/healthz") { _, _ in
            let (total, active, queued) = await manager.counts
            return Response.json(Health(device: config.deviceName, sessions: total, active: active, queued: queued,
                                        maxActiveSessions: config.maxActiveSessions, maxQueuedSessions: config.maxQueuedSessions))
        }
        router.get("/metrics") { _, _ in
            manager.updateDeviceMemory()
            return WebPage.response(metrics.render(), type: "text/plain; version=0.0.4; charset=utf-8")
        }

        router.post("/v1/sessions") { request, _ in
            var request = request
            let session: Session
            if request.headers[.contentType]?.lowercased().hasPrefix("multipart/form-data") == true {
                session = try await SessionUpload.create(&request, manager: manager)
            } else {
                let body = try await request.decode(as: SessionRequest.Body.self, limit: config.maxMessageBytes)
                session = try await manager.create(try SessionRequest(body, live: false, config: config))
            }
            var response = Response.json(session.statusMessage(), status: .created)
            response.headers[.location] = "/v1/sessions/\(session.id)"
            return response
        }
        router.get("/v1/sessions") { _, _ in
            Response.json(["sessions": await manager.all.map { $0.statusMessage() }])
        }
        router.get("/v1/sessions/{id}") { _, context in
            let id = try context.parameters.require("id")
            guard let session = await manager.session(id) else { throw APIError.notFound(id) }
            return Response.json(session.statusMessage())
        }
        router.delete("/v1/sessions/{id}") { _, context in
            let id = try context.parameters.require("id")
            guard await manager.session(id) != nil else { throw APIError.notFound(id) }
            await manager.remove(id, reason: .deleted)
            return Response(status: .noContent)
        }
        router.get("/v1/sessions/{id}/video") { _, context in
            let id = try context.parameters.require("id")
            guard let session = await manager.session(id) else { throw APIError.notFound(id) }
            guard session.request.record else {
                throw APIError(.notFound, "not_recorded", "session \(id) was started with options.record = false")
            }
            guard let path = session.recording else {
                throw APIError(.conflict, "recording_not_ready",
                               "the recording is complete once session \(id) has stopped (it is \(session.state.rawValue))")
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
            let body = try await FileIO().loadFile(path: path, context: context)
            let isMP4 = path.hasSuffix(".mp4")
            var headers: HTTPFields = [.contentType: isMP4 ? "video/mp4" : "video/x-yuv4mpeg",
                                       .contentDisposition: "attachment; filename=\"reel-\(id).\(isMP4 ? "mp4" : "y4m")\""]
            if let size { headers[.contentLength] = String(size) }
            return Response(status: .ok, headers: headers, body: body)
        }

        let messageLimiter = ClientRateLimiter(rate: config.access.messagesPerSecond, burstSeconds: config.access.burstSeconds)
        router.ws("/v1/ws") { _, _ in .upgrade() } onUpgrade: { inbound, outbound, context in
            await SocketConnection(manager: manager, client: context.requestContext.client, limiter: messageLimiter)
                .run(inbound: inbound, outbound: outbound)
            // The WebSocket library then closes the connection after a close handshake of at most its close timeout.
            // Should that handshake's reading hang (a peer still sending a message over the size limit fills the
            // receive buffer and its close frame never arrives), close it anyway; closing again is harmless.
            let channel = context.requestContext.channel
            Task {
                try? await Task.sleep(for: Self.webSocketCloseTimeout + .seconds(5))
                try? await channel.close()
            }
        }
        return router
    }

    /// How long a WebSocket's close handshake may take before the server closes the connection.
    static let webSocketCloseTimeout: Duration = .seconds(15)

    /// The application listening on `host:port`.
    public func application(host: String, port: Int, logger: Logger) -> Application<RouterResponder<ReelRequestContext>> {
        let router = self.router()
        let webSocketResponder = router.buildResponder()
        let ws = WebSocketServerConfiguration(maxFrameSize: SocketConnection.transportLimit(config),
                                              closeTimeout: Self.webSocketCloseTimeout, validateUTF8: true)
        let idleTimeout = config.connectionIdleTimeout
        let server = HTTPServerBuilder { responder in
            let base = HTTP1WebSocketUpgradeChannel(responder: responder, webSocketResponder: webSocketResponder,
                                                    configuration: .init(ws: ws))
            return IdleClosingChannel(base: MalformedRequestAnsweringChannel(base: base), idleTimeout: idleTimeout)
        }
        return Application(router: router, server: server,
                           configuration: .init(address: .hostname(host, port: port), serverName: "reel"),
                           logger: logger)
    }

    /// Serves until SIGINT or SIGTERM, then stops every session and ends (graceful shutdown).
    public func run(host: String, port: Int, logger: Logger) async throws {
        try await serviceGroup(host: host, port: port, logger: logger).run()
    }

    /// The HTTP server and the session reaper as one service group. On graceful shutdown the reaper
    /// (started last, so stopped first) stops every session, then the server closes.
    public func serviceGroup(host: String, port: Int, logger: Logger,
                             signals: [UnixSignal] = [.sigterm, .sigint]) -> ServiceGroup {
        let app = application(host: host, port: port, logger: logger)
        return ServiceGroup(configuration: .init(services: [app, SessionReaper(manager: manager)],
                                                 gracefulShutdownSignals: signals, logger: logger))
    }
}

/// Reclaims idle sessions every `reapInterval`; on graceful shutdown, stops them all.
public struct SessionReaper: Service {
    public let manager: SessionManager

    public init(manager: SessionManager) { self.manager = manager }

    public func run() async throws {
        let interval = manager.config.reapInterval
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                await manager.reap()
            }
        }
        await manager.shutdown()
    }
}

/// Counts error answers for /metrics.
struct ErrorCountingMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: Metrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            metrics.add("reel_client_errors_total")
            throw error
        }
    }
}

/// `GET /healthz`.
private struct Health: Encodable {
    let status = "ok"
    let device: String
    let sessions: Int, active: Int, queued: Int
    let maxActiveSessions: Int, maxQueuedSessions: Int
}
