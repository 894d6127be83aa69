import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import ReelCore

/// The server's connections with one more rule: a request the HTTP layer cannot serve is answered with a 4xx status
/// and a short JSON body (`{"error": {"code", "message"}}`), then the connection is closed.
///
/// hummingbird-websocket's upgrade pipeline turns NIO's error handling off (`enableErrorHandling = false`, "handled
/// by Hummingbird"), but a parse error before the first request reaches Hummingbird is handled by no one: malformed
/// request lines, non-HTTP bytes (a TLS hello), headers over 80 KiB, negative `Content-Length` were answered with
/// nothing and held until the idle timeout. An upgrade NIO's upgrader does not take (no `Sec-WebSocket-Key`, another
/// version, another protocol, a body) lost its request head there (swift-nio `NIOTypedHTTPServerUpgraderStateMachine`
/// buffers nothing when no upgrader matches) and was closed with nothing, or hung. `MalformedRequestHandler` answers
/// both.
struct MalformedRequestAnsweringChannel<Base: ServerChildChannel>: ServerChildChannel {
    let base: Base

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Base.Value> {
        base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            // Right behind the request decoder: its errors come here first, and upgrade requests are checked before
            // NIO's upgrade handler (behind this one) sees them. A pipeline without the decoder is left as it is.
            let pipeline = channel.pipeline.syncOperations
            if let decoder = try? pipeline.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self) {
                try pipeline.addHandler(MalformedRequestHandler(), position: .after(decoder.handler))
            }
            return value
        }
    }

    func handle(value: Base.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Answers HTTP parse errors (400; 431 for headers over the limit) and WebSocket upgrade requests that NIO's upgrader
/// would drop (400; 426 with `Sec-WebSocket-Version: 13` for another version), then closes the connection: its output
/// first, then, `lingerTime` later, the rest (closing with unread input would reset the connection, and a client
/// still sending a large header could lose the answer).
///
/// A parse error after well-formed requests on the same connection is answered after their answers; one in the middle
/// of a request's body goes on to Hummingbird, whose reading of the body fails (`Request.collectBody(limit:tooLarge:)`
/// answers 400 `bad_body`). An upgrade request that passes is not read further: from then on the handler reads
/// response parts only until the `101 Switching Protocols` passes, then passes everything on unread (the WebSocket's
/// bytes come through it).
final class MalformedRequestHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    static let lingerTime = TimeAmount.seconds(2)

    private enum State: Equatable {
        case http        // HTTP requests (the first one not an upgrade)
        case upgrading   // the first request is an upgrade NIO's upgrader takes
        case upgraded    // a WebSocket: nothing here is HTTP any more
        case answering   // a malformed request seen: input is dropped until the connection closes
    }
    private var state = State.http
    private var requests = 0, responses = 0
    /// A request's head has come and its end not yet.
    private var inRequest = false
    /// The answer to send once the responses to the requests before it are written.
    private var pending: APIError?
    /// The response being written ends the connection.
    private var closeAfterResponse = false
    /// Requests (counted from 1) whose responses end the connection: HTTP/1.0 ones without `Connection: keep-alive`
    /// (Hummingbird closes after an HTTP/1.1 `Connection: close` itself, but kept HTTP/1.0 connections open).
    private var closingRequests: Set<Int> = []
    private var inputEnded = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state == .http else {
            if state == .upgrading || state == .upgraded { context.fireChannelRead(data) }
            return
        }
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            if requests == 0, let refusal = Self.refusal(ofUpgrade: head) {
                answer(context: context, refusal)
                return
            }
            if requests == 0 && head.headers.contains(name: "upgrade") { state = .upgrading }
            requests += 1
            inRequest = true
            if head.version.major == 1 && head.version.minor == 0 && !head.isKeepAlive { closingRequests.insert(requests) }
        case .end:
            inRequest = false
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard state == .http, let parseError = error as? HTTPParserError else {
            // After an answer: the decoder's complaints about the input that followed its error.
            if state != .answering { context.fireErrorCaught(error) }
            return
        }
        if inRequest {
            state = .answering
            context.fireErrorCaught(error)   // the request's body stream fails: Hummingbird answers
            return
        }
        let refusal = parseError == .headerOverflow
            ? APIError(.requestHeaderFieldsTooLarge, "headers_too_large", "the request's header is larger than 80 KiB")
            : APIError(.badRequest, "malformed_request", "not an HTTP/1.1 request (\(parseError))")
        if responses < requests {
            state = .answering
            pending = refusal   // after the answers to the requests before it
        } else {
            answer(context: context, refusal)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard state != .upgraded else {
            context.write(data, promise: promise)
            return
        }
        var part = Self.unwrapOutboundIn(data), ended = false
        switch part {
        case .head(var head):
            if head.status == .switchingProtocols {
                state = .upgraded
            } else if closingRequests.remove(responses + 1) != nil {
                head.headers.replaceOrAdd(name: "Connection", value: "close")
                part = .head(head)
                closeAfterResponse = true
            } else if head.status.code == 413 && inRequest && state == .http {
                // A body refused before it was read (its Content-Length is over the limit): Hummingbird would read it
                // to its end before the next request. The connection ends after this answer instead.
                head.headers.replaceOrAdd(name: "Connection", value: "close")
                part = .head(head)
                closeAfterResponse = true
            }
        case .end:
            responses += 1
            ended = true
        case .body:
            break
        }
        guard ended else {
            context.write(Self.wrapOutboundOut(part), promise: promise)
            return
        }
        if closeAfterResponse {
            state = .answering
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.cascade(to: promise)
            context.write(Self.wrapOutboundOut(part), promise: written)
            closeLingering(context: context, after: written.futureResult)
            return
        }
        context.write(Self.wrapOutboundOut(part), promise: promise)
        if responses >= requests, let refusal = pending {
            pending = nil
            answer(context: context, refusal)
        }
    }

    /// Writes `error`'s answer, then closes the connection lingering.
    private func answer(context: ChannelHandlerContext, _ error: APIError) {
        state = .answering
        let body = ByteBuffer(string: JSON.text(of: ["error": error]))
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", String(body.readableBytes)),
                                   ("Connection", "close")])
        for field in error.headers { headers.add(name: field.name.rawName, value: field.value) }
        let head = HTTPResponseHead(version: .http1_1, status: .init(statusCode: error.status.code), headers: headers)
        context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        closeLingering(context: context, after: context.writeAndFlush(Self.wrapOutboundOut(.end(nil))))
    }

    /// Once `sent`: closes the output, and the connection `lingerTime` later (its input is dropped meanwhile).
    private func closeLingering(context: ChannelHandlerContext, after sent: EventLoopFuture<Void>) {
        let loop = context.eventLoop.assumeIsolated()
        context.flush()
        sent.assumeIsolated().whenComplete { _ in
            context.close(mode: .output, promise: nil)
            loop.scheduleTask(in: Self.lingerTime) {
                self.endInput(context: context)
                context.close(promise: nil)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if state == .answering { endInput(context: context) }   // the client closed first
        context.fireChannelInactive()
    }

    /// Tells the handlers behind that no more input comes: NIO's upgrade handler then ends quietly (removed without it,
    /// it fails its upgrade with "inappropriate operation for state", which Hummingbird logs as an error), and
    /// Hummingbird's request loop ends.
    private func endInput(context: ChannelHandlerContext) {
        guard !inputEnded else { return }
        inputEnded = true
        context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
    }

    /// Why an upgrade request would not be upgraded (nil: it is not an upgrade, or NIO's WebSocket upgrader takes it).
    /// The checks are RFC 6455 section 4.2.1's: a GET, `Upgrade: websocket`, one `Sec-WebSocket-Key` of 16 bytes in
    /// base64, `Sec-WebSocket-Version: 13`.
    static func refusal(ofUpgrade head: HTTPRequestHead) -> APIError? {
        let protocols = head.headers[canonicalForm: "upgrade"].map { $0.lowercased() }
        guard !protocols.isEmpty else { return nil }
        func bad(_ message: String) -> APIError { APIError(.badRequest, "bad_upgrade", message) }
        guard protocols.contains("websocket") else {
            return bad("only WebSocket upgrades are served (Upgrade: websocket), not \(protocols.joined(separator: ", "))")
        }
        guard head.method == .GET else { return bad("a WebSocket upgrade is a GET, not \(head.method.rawValue)") }
        guard head.headers["content-length"].allSatisfy({ $0 == "0" }) && !head.headers.contains(name: "transfer-encoding") else {
            return bad("a WebSocket upgrade has no body")
        }
        let keys = head.headers["sec-websocket-key"]
        guard keys.count == 1, let key = Data(base64Encoded: keys[0]), key.count == 16 else {
            return bad("a WebSocket upgrade needs one Sec-WebSocket-Key: 16 random bytes in base64")
        }
        let versions = head.headers["sec-websocket-version"]
        guard versions == ["13"] else {
            guard !versions.isEmpty else { return bad("a WebSocket upgrade needs Sec-WebSocket-Version: 13") }
            return APIError(.upgradeRequired, "unsupported_websocket_version",
                            "this server speaks WebSocket version 13, not \(versions.joined(separator: ", "))",
                            headers: [.secWebSocketVersion: "13"])
        }
        return nil
    }
}
