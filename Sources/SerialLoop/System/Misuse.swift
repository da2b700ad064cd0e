// API misuse: programmer errors trap, and say what was wrong in every build.
//
// `precondition(_:_:)` and `preconditionFailure(_:)` drop their message under `-O` (the process
// dies with "Illegal instruction" and nothing else), and users ship release builds. Every misuse
// check in the package goes through these two, which use `fatalError` (its message is kept in
// every build). Internal invariants, which no caller can break, keep `precondition`/`assert`.

/// Traps with `message` unless `condition` holds.
@inline(__always)
package func misuseCheck(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
    if !condition { misuse(message(), file: file, line: line) }
}

/// Traps with `message`: the caller broke a documented precondition.
@inline(never)
package func misuse(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError(message, file: file, line: line)
}
