import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Refuses an oversized request from its head: a `Content-Length` above the limit is answered 413 at once and
/// the connection closed, before any of the body is read. A client that announces 10 GB and sends 7 KB must
/// not hold a connection for minutes. A body without a length that grows past the limit is answered by the
/// route (its own 413), and then the connection is closed instead of reading the rest.
///
/// Closing is polite: the answer goes out, then our side of the connection is shut, and what the client still
/// sends is read and dropped for a moment before the full close (closing with unread input would reset the
/// connection and could destroy the answer in flight).
final class BodyLimitHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let limit: Int
    /// After the refusal: input is dropped until the close.
    private var refused = false
    private var bodyBytes = 0
    private var closeAfterResponse = false
    static let lingerBeforeClose = TimeAmount.seconds(2)

    init(limit: Int) { self.limit = limit }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if refused { return }
        switch unwrapInboundIn(data) {
        case let .head(head):
            bodyBytes = 0
            if let text = head.headerFields[.contentLength], Int(text).map({ $0 > limit }) ?? true {
                refuse(context)
                return
            }
        case let .body(buffer):
            bodyBytes += buffer.readableBytes
            if bodyBytes > limit { closeAfterResponse = true }
        case .end:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if closeAfterResponse, case .end = unwrapOutboundIn(data) {
            refused = true
            context.writeAndFlush(data, promise: promise)
            shutDown(context)
            return
        }
        context.write(data, promise: promise)
    }

    private func refuse(_ context: ChannelHandlerContext) {
        refused = true
        let body = ByteBuffer(string: "body too large (limit \(limit) bytes)\n")
        var head = HTTPResponse(status: .contentTooLarge)
        head.headerFields[.connection] = "close"
        head.headerFields[.contentType] = "text/plain"
        head.headerFields[.contentLength] = "\(body.readableBytes)"
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        shutDown(context)
    }

    private func shutDown(_ context: ChannelHandlerContext) {
        let bound = context.loopBound
        context.close(mode: .output, promise: nil)
        context.eventLoop.scheduleTask(in: Self.lingerBeforeClose) { bound.value.close(promise: nil) }
    }
}
