@preconcurrency import Glibc
import Testing
@testable import SerialLoop

/// Every ``LoopError/Kind`` the loop throws, each triggered for real and told apart by a `switch`
/// on the kind, the way a program does (never by the message). `virtualTimeNotLinked` needs a
/// program without virtual time: ModeTests' `virtualTimeWithoutTheOptInSaysWhatToLink`; a descriptor
/// closed behind the loop's back: SoundnessTests' `waitersOnADescriptorClosedWhileWaitingFailWithEBADF`.
@Suite("LoopError kinds")
struct ErrorKindTests {
    /// The kind's name, by an exhaustive switch: a new kind is a compile error here first.
    static func name(_ kind: LoopError.Kind) -> String {
        switch kind {
        case .shutDown: "shutDown"
        case .descriptorClosed: "descriptorClosed"
        case .system(let errno): "system(\(errnoName(errno)))"
        case .stalled: "stalled"
        case .stopped: "stopped"
        case .invalidArgument: "invalidArgument"
        case .virtualTimeNotLinked: "virtualTimeNotLinked"
        case .futureAbandoned: "futureAbandoned"
        }
    }

    /// The kind of the error `body` threw, or what went wrong instead.
    static func kind(_ body: () async throws -> Void) async -> String {
        do {
            try await body()
            return "no error"
        } catch let error as LoopError {
            return name(error.kind)
        } catch {
            return "not a LoopError: \(error)"
        }
    }

    /// Every async API after shutdown, offload's and signals' own messages included.
    @Test func everyAPIAfterShutdownIsShutDown() async throws {
        let loop = try await withLoop { $0 }
        let (a, b) = makeSocketPair()
        defer { close(a); close(b) }
        #expect(await Self.kind { try await loop.sleep(for: .seconds(1)) } == "shutDown")
        #expect(await Self.kind { try await loop.readable(a) } == "shutDown")
        #expect(await Self.kind { _ = try await loop.offload { 1 } } == "shutDown")
        #expect(await Self.kind { _ = try loop.signals(SIGUSR1) } == "shutDown")
        #expect(await Self.kind { _ = try await loop.gather([{ @Sendable in 1 }]) } == "shutDown")
        do {
            _ = try await loop.offload { 1 }
        } catch let error as LoopError {
            #expect(error.isLoopShutDown, "isLoopShutDown holds for offload's shutdown error too")
            #expect(error.description == "offload: the loop has shut down, and its offload threads with it")
        }
    }

    @Test func aWaitOnADescriptorClosedThroughTheLoopIsDescriptorClosed() async throws {
        let (kind, errno) = try await withWatchdog(seconds: 10) { try await withLoop { loop in
            let (a, b) = makeSocketPair()
            let waiter = Task(executorPreference: loop) { try await loop.readable(a) }
            await loop.idleTick()
            try loop.close(a)
            close(b)
            let error = loopError(await waiter.result)
            return (error.map { Self.name($0.kind) }, error?.errno)
        } }
        #expect(kind == "descriptorClosed")
        #expect(errno == nil, "closed through the loop: no errno")
    }

    @Test func kernelRefusalsAreSystemWithTheirErrno() async throws {
        try await withLoop { loop in
            #expect(await Self.kind { try await loop.readable(-1) } == "system(EBADF)")
            let file = open("/proc/self/status", O_RDONLY)
            defer { close(file) }
            #expect(await Self.kind { try loop.addReader(file) {} } == "system(EPERM)")
        }
    }

    @Test func aStoppedRunUntilIsStopped() throws {
        let loop = try Loop()
        defer { loop.shutdown() }
        let task = Task(executorPreference: loop) { try await loop.sleep(for: .seconds(3600)) }
        loop.schedule(after: .milliseconds(1)) { loop.stop() }
        do {
            try loop.run(until: task)
            Issue.record("run(until:) returned after stop()")
        } catch let error as LoopError {
            #expect(Self.name(error.kind) == "stopped")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func aStalledTestLoopIsStalled() async throws {
        let kind = await Self.kind {
            try await withTestLoop { loop in
                loop.stallTimeout = .milliseconds(50)
                try await loop.makeFuture(of: Void.self).value     // nothing can complete it
            }
        }
        #expect(kind == "stalled")
    }

    @Test func signalsRefusedBeforeInstallingAreInvalidArgument() async throws {
        try await withLoop { loop in
            #expect(await Self.kind { _ = try loop.signals() } == "invalidArgument")
            #expect(await Self.kind { _ = try loop.signals(SIGKILL) } == "invalidArgument")
            // glibc's reserved signal: the kernel's word (sigaction), not the loop's.
            #expect(await Self.kind { _ = try loop.signals(32) } == "system(EINVAL)")
        }
    }

    @Test func aFutureDroppedUncompletedIsFutureAbandoned() async throws {
        let kind = try await withLoop { loop in
            let outcome = Lock<String?>(nil)
            var future: LoopFuture<Int>? = loop.makeFuture()
            future!.whenComplete { result in
                if case .failure(let error as LoopError) = result { outcome.withLock { $0 = Self.name(error.kind) } }
            }
            future = nil
            _ = future
            await loop.idleTick()
            return outcome.withLock { $0 }
        }
        #expect(kind == "futureAbandoned")
    }
}
