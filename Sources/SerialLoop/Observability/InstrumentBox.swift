/// An installed ``LoopInstrument`` as the observed tick calls it.
///
/// The tick holds its boxes as `Unmanaged` references and calls them through
/// `_withUnsafeGuaranteedRef`, which borrows: a call on an `any LoopInstrument` read from storage
/// retains and releases the instrument around every hook (~45 instructions per call, four calls
/// per one-job tick, measured with callgrind). `Unmanaged` needs a class type, not an existential,
/// hence a class whose generic subclasses know the instrument's concrete type. The box also
/// routes the end-of-job and end-of-tick hooks to the right variant: with durations for a
/// ``LoopTimingInstrument``, without for any other.
class InstrumentBox {
    /// A box for `instrument`, opened to its dynamic type.
    static func boxing(_ instrument: any LoopInstrument) -> InstrumentBox {
        if let timing = instrument as? any LoopTimingInstrument { return boxTiming(timing) }
        return box(instrument)
    }
    private static func box<I: LoopInstrument>(_ instrument: I) -> InstrumentBox { Plain(instrument) }
    private static func boxTiming<I: LoopTimingInstrument>(_ instrument: I) -> InstrumentBox { Timing(instrument) }

    /// Whether the instrument wants durations (the loop times jobs while any installed one does).
    var isTiming: Bool { false }

    func tickWillStart() { fatalError("InstrumentBox is abstract") }
    func timerDidFire(deadline: LoopClock.Instant, lag: Duration) { fatalError("InstrumentBox is abstract") }
    func jobWillRun(_ job: LoopJobKind) { fatalError("InstrumentBox is abstract") }
    /// Untimed ticks call `jobDidRun(_:)` and `tickDidEnd()`; timed ticks the variants with
    /// durations (which a plain instrument's box forwards without them).
    func jobDidRun(_ job: LoopJobKind) { fatalError("InstrumentBox is abstract") }
    func jobDidRun(_ job: LoopJobKind, duration: Duration) { fatalError("InstrumentBox is abstract") }
    func pollWillStart(timeout: Duration?) { fatalError("InstrumentBox is abstract") }
    func pollDidEnd(events: Int, blocked: Duration) { fatalError("InstrumentBox is abstract") }
    func tickDidEnd() { fatalError("InstrumentBox is abstract") }
    func tickDidEnd(duration: Duration) { fatalError("InstrumentBox is abstract") }

    private class Typed<Instrument: LoopInstrument>: InstrumentBox {
        let instrument: Instrument
        init(_ instrument: Instrument) { self.instrument = instrument }

        override func tickWillStart() { instrument.tickWillStart() }
        override func timerDidFire(deadline: LoopClock.Instant, lag: Duration) { instrument.timerDidFire(deadline: deadline, lag: lag) }
        override func jobWillRun(_ job: LoopJobKind) { instrument.jobWillRun(job) }
        override func pollWillStart(timeout: Duration?) { instrument.pollWillStart(timeout: timeout) }
        override func pollDidEnd(events: Int, blocked: Duration) { instrument.pollDidEnd(events: events, blocked: blocked) }
    }

    private final class Plain<Instrument: LoopInstrument>: Typed<Instrument> {
        override func jobDidRun(_ job: LoopJobKind) { instrument.jobDidRun(job) }
        override func jobDidRun(_ job: LoopJobKind, duration: Duration) { instrument.jobDidRun(job) }
        override func tickDidEnd() { instrument.tickDidEnd() }
        override func tickDidEnd(duration: Duration) { instrument.tickDidEnd() }
    }

    private final class Timing<Instrument: LoopTimingInstrument>: Typed<Instrument> {
        override var isTiming: Bool { true }
        // Never called untimed: while a timing instrument is installed, every tick is timed.
        override func jobDidRun(_ job: LoopJobKind) { instrument.jobDidRun(job, duration: .zero) }
        override func jobDidRun(_ job: LoopJobKind, duration: Duration) { instrument.jobDidRun(job, duration: duration) }
        override func tickDidEnd() { instrument.tickDidEnd(duration: .zero) }
        override func tickDidEnd(duration: Duration) { instrument.tickDidEnd(duration: duration) }
    }
}
