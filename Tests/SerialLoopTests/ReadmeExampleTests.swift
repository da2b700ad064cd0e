import Testing
import SerialLoop
import SerialLoopNet

// The README's example, verbatim apart from the wrapping function: if it stops compiling or
// stops printing 6, the README is wrong.
private actor Inventory {                       // an actor that lives on the loop
    let loop: Loop
    var stock = 0
    init(loop: Loop) { self.loop = loop }
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    func add(_ n: Int) -> Int { stock += n; return stock }
}

@Suite("README")
struct ReadmeExampleTests {
    @Test func exampleComputesSix() async throws {
        let total = try await withLoop { loop in
            let inventory = Inventory(loop: loop)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in 1...3 {
                    group.addTask {
                        try await Task.sleep(for: .milliseconds(100 * n))
                        _ = await inventory.add(n)
                    }
                }
                try await group.waitForAll()
            }
            return await inventory.add(0)
        }
        #expect(total == 6)
    }
}
