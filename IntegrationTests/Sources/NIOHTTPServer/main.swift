// The wrk baseline: the same routes as `serial-loop-http-server`, served by SwiftNIO's HTTP/1 pipeline
// on ONE event-loop thread, so the comparison is one thread against one thread; with --threads N,
// on a `MultiThreadedEventLoopGroup` of N threads (NIO's own way past one core: one listening
// channel, accepted connections handed to the group's loops round robin).
//
//   nio-http-server [--port N] [--threads N]     prints "listening on 127.0.0.1:PORT" once bound
//
// Routes (identical bodies in both servers):
//   GET  /          "Hello, world!\n"
//   GET  /bytes/N   N bytes of the pattern "abc…xyzabc…"
//   POST /echo      the request body
//   GET  /work/R    the hash of R rounds of CPUWork.cpuWork over the path, in hex (CPU-bound)
import CPUWork
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
@preconcurrency import Glibc
#endif

final class RouteHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var head: HTTPRequestHead?
    private var body: ByteBuffer?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = nil
        case .body(var chunk):
            if body == nil { body = chunk } else { body!.writeBuffer(&chunk) }
        case .end:
            guard let head else { return }
            respond(to: head, context: context)
            self.head = nil
            self.body = nil
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        var status = HTTPResponseStatus.ok
        var payload: ByteBuffer
        let path = head.uri
        if head.method == .GET && path == "/" {
            payload = context.channel.allocator.buffer(string: "Hello, world!\n")
        } else if head.method == .GET && path.hasPrefix("/bytes/"), let count = Int(path.dropFirst("/bytes/".count)),
                  count >= 0, count <= 256 << 20 {
            payload = context.channel.allocator.buffer(capacity: count)
            payload.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
                for index in 0..<count { raw[index] = UInt8(ascii: "a") &+ UInt8(index % 26) }
                return count
            }
        } else if head.method == .GET && path.hasPrefix("/work/"), let rounds = workRounds(path: path) {
            payload = context.channel.allocator.buffer(string: cpuWorkBody(path: path, rounds: rounds))
        } else if head.method == .POST && path == "/echo" {
            payload = body ?? context.channel.allocator.buffer(capacity: 0)
        } else {
            status = .notFound
            payload = context.channel.allocator.buffer(string: "not found: \(head.method) \(path)\n")
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: status == .ok && path.hasPrefix("/bytes/") ? "application/octet-stream" : "text/plain")
        headers.add(name: "Content-Length", value: String(payload.readableBytes))
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(payload))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}

var port = 0
var threads = 1
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--port":
        guard let value = arguments.popFirst().flatMap(Int.init) else { fatalError("--port needs a number") }
        port = value
    case "--threads":
        guard let value = arguments.popFirst().flatMap(Int.init), value >= 1 else { fatalError("--threads needs a number >= 1") }
        threads = value
    default:
        fatalError("unknown argument \(argument); usage: nio-http-server [--port N] [--threads N]")
    }
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelOption(.maxMessagesPerRead, value: 16)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(RouteHandler())
        }
    }
let channel = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
print("listening on 127.0.0.1:\(channel.localAddress?.port ?? -1)")
fflush(nil)   // all streams: the script waits for this line
try channel.closeFuture.wait()
