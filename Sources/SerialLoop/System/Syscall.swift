@preconcurrency import Glibc
import CSerialLoopShims

/// The one discipline every system call in the loop goes through: retry `EINTR`, and turn any other
/// failure into a ``LoopError`` that names the call.
///
/// - Returns: the call's non-negative result.
@inline(__always)
package func syscall<T: FixedWidthInteger>(_ operation: @autoclosure () -> String, _ body: () -> T) throws(LoopError) -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = c_serial_loop_errno()
        if code == EINTR { continue }
        throw LoopError(operation: operation(), errno: code)
    }
}

extension Duration {
    /// The duration in whole nanoseconds, saturating at `Int64.min`/`Int64.max` instead of trapping,
    /// so `.seconds(Int64.max)` means "practically never" rather than a crash.
    var saturatingNanoseconds: Int64 {
        // Fast path, for every non-negative duration under ~4,700 s (2^63 ns / 1,953,125): 10^9 =
        // 2^9 × 1,953,125, so dividing the attoseconds by 2^9 (a shift) leaves a 64-bit division by
        // a constant (a multiply). `components` divides a 128-bit value by 10^18 instead: ~200
        // instructions, a sixth of a schedule + cancel.
        let exact = attoseconds
        if exact >= 0 && exact >> 9 <= Int128(Int64.max) {
            return Int64(truncatingIfNeeded: exact >> 9) / 1_953_125
        }
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, overflow2) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
        if overflow2 { return seconds < 0 ? .min : .max }
        return sum
    }
}

extension Int64 {
    /// `self - other`, clamped to the representable range.
    @inline(__always)
    func saturatingSubtract(_ other: Int64) -> Int64 {
        let (difference, overflow) = subtractingReportingOverflow(other)
        if overflow { return other > 0 ? .min : .max }
        return difference
    }

    /// `self + other`, clamped to the representable range.
    @inline(__always)
    func saturatingAdd(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        if overflow { return other > 0 ? .max : .min }
        return sum
    }
}
