import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore

/// The server's connections with one more rule: a connection on which nothing is read or written for `idleTimeout`
/// is closed.
///
/// Without it, a connection whose first request never completes (nothing sent, half a request line; before
/// `MalformedRequestAnsweringChannel`, also a header over the size limit or a malformed request line, which the HTTP
/// layer answered with nothing) was held open for ever, one file descriptor each (found by `deploy/soak.py`). A WebSocket stays busy while it is open (the server
/// pings every 30 s) and an HTTP request is read and answered, so only such connections reach the limit.
struct IdleClosingChannel<Base: ServerChildChannel>: ServerChildChannel {
    let base: Base
    let idleTimeout: Duration

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Base.Value> {
        let timeout = TimeAmount.nanoseconds(Int64(idleTimeout.seconds * 1e9))
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandlers([IdleStateHandler(allTimeout: timeout), CloseWhenIdle()],
                                                            position: .first)
        }.flatMap { base.setup(channel: channel, logger: logger) }
    }

    func handle(value: Base.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Closes its channel when the `IdleStateHandler` before it says it is idle.
private final class CloseWhenIdle: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
