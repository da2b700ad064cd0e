@preconcurrency import Glibc
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import SerialLoop
import SerialLoopLogging
import SerialLoopMetrics

/// State that lives on a SerialLoop: an actor whose executor is the loop (on a `LoopThread`).
actor LoopBoundCounter {
    let loop: Loop
    private var hits = 0

    init(loop: Loop) { self.loop = loop }

    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    /// Sleeps on the loop's timers, then counts the hit. Reports where it ran, before and after the await.
    func hit(delay: Duration) async throws -> (count: Int, onLoopBefore: Bool, onLoopAfter: Bool) {
        let before = loop.isOnLoopThread
        try await loop.sleep(for: delay)
        hits += 1
        return (hits, before, loop.isOnLoopThread)
    }

    /// Blocks the loop thread (for the debug-mode slow-job report).
    func block(milliseconds: Int) -> Bool {
        usleep(UInt32(milliseconds) * 1000)
        return loop.isOnLoopThread
    }
}

/// Hummingbird 2 on its own NIO event loops; the handlers await an actor that lives on a
/// SerialLoop running on a LoopThread. The loop's metrics are published through the
/// SerialLoopMetrics bridge to swift-prometheus and served on /metrics; its debug-mode reports go
/// through the SerialLoopLogging bridge to a swift-log Logger (stderr).
///
/// Routes: GET /actor/MS (awaits the actor, which sleeps MS ms on the loop), GET /block/MS (blocks
/// the loop MS ms: a slow job), GET /metrics (Prometheus text).
func runHummingbirdServer(_ arguments: [String]) async throws {
    let thread = try Loop.startThread()
    let loop = thread.loop
    let counter = LoopBoundCounter(loop: loop)

    let registry = PrometheusCollectorRegistry()
    let factory = PrometheusMetricsFactory(registry: registry)
    MetricsSystem.bootstrap(factory)
    let publisher = LoopMetricsPublisher(loop: loop, loopName: "hummingbird")
    publisher.start(interval: .milliseconds(100))

    let loopLogger = Logger(label: "serialloop")
    let installed = loop.makeFuture(of: Void.self)
    loop.execute {
        loop.debug = .logging(to: loopLogger, loopName: "hummingbird", slowJobThreshold: .milliseconds(50), lagThreshold: .milliseconds(50))
        loop.addInstrument(LoopTimersInstrument(loopName: "hummingbird"))
        installed.succeed(())
    }
    try await installed.value

    let router = Router()
    router.get("actor/:ms") { _, context -> String in
        let ms = try context.parameters.require("ms", as: Int.self)
        let handlerOnLoop = loop.isOnLoopThread
        let result = try await counter.hit(delay: .milliseconds(ms))
        return "count=\(result.count) actor-on-loop=\(result.onLoopBefore && result.onLoopAfter) handler-on-loop=\(handlerOnLoop)\n"
    }
    router.get("block/:ms") { _, context -> String in
        let ms = try context.parameters.require("ms", as: Int.self)
        let onLoop = await counter.block(milliseconds: ms)
        return "blocked=\(ms)ms on-loop=\(onLoop)\n"
    }
    router.get("metrics") { _, _ -> String in
        registry.emitToString()
    }
    let app = Application(
        router: router,
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in
            print("listening on 127.0.0.1:\(channel.localAddress?.port ?? 0)")
            fflush(stdout)
        }
    )
    try await app.runService()      // until SIGTERM/SIGINT (graceful)
    await publisher.stop()
    thread.shutdown()
    print("hummingbird-server: stopped")
    Check.finish("hummingbird-server")
}
