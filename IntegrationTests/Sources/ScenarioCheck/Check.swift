@preconcurrency import Glibc

// What every scenario program uses to report: the `scenarios` and `simulation-scenarios` targets
// (through the ScenarioCheck target), and Ecosystem/'s `ecosystem-scenarios` (a symlink to this file).

/// Prints each check as it is made ("ok" or "FAIL") and remembers failures for the exit code.
/// Only the main thread calls it (before and after a loop runs, or from a loop on the main thread).
public enum Check {
    nonisolated(unsafe) private static var failures: [String] = []

    public static func that(_ condition: Bool, _ message: @autoclosure () -> String) {
        let text = message()
        print("  \(condition ? "ok  " : "FAIL") \(text)")
        if !condition { failures.append(text) }
    }

    public static func note(_ message: String) {
        print("  --   \(message)")
    }

    /// Exits 0 if every check passed, 1 otherwise (listing the failures).
    public static func finish(_ scenario: String) -> Never {
        fflush(nil)
        if failures.isEmpty {
            print("\(scenario): all checks passed")
            exit(0)
        }
        print("\(scenario): \(failures.count) check(s) FAILED:")
        for failure in failures { print("  - \(failure)") }
        exit(1)
    }
}

public func milliseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1000 + Double(attoseconds) / 1e15
}

public func format(_ value: Double, _ digits: Int = 1) -> String {
    var text = String(value.rounded(toPlaces: digits))
    if !text.contains(".") { text += ".0" }
    return text
}

extension Double {
    public func rounded(toPlaces places: Int) -> Double {
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        return (self * scale).rounded() / scale
    }
}
