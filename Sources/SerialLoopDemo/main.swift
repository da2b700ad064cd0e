import SerialLoop
@preconcurrency import Glibc

actor Counter {
    let loop: Loop
    var value = 0
    init(loop: Loop) { self.loop = loop }
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    func bump() -> Int { value += 1; return value }
}

let result = try withLoop { loop in
    let t0 = loop.now
    try await loop.sleep(for: .milliseconds(50))
    print("slept", t0.duration(to: loop.now))
    try await Task.sleep(for: .milliseconds(20))
    print("Task.sleep done", t0.duration(to: loop.now), loop.isOnLoopThread)
    let c = Counter(loop: loop)
    let v = await c.bump()
    print("actor", v, loop.isOnLoopThread)
    async let a = loop.sleep(for: .milliseconds(10))
    try await a
    print("async let ok", loop.isOnLoopThread)
    return 42
}
print("result", result)
let vt = try withTestLoop { loop in
    try await Task.sleep(for: .seconds(3600))
    return loop.now
}
print("virtual", vt)
