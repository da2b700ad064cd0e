/// What a group's loops are waiting for (``LoopGroup/pendingWork``): each loop's
/// ``LoopPendingWork``, and the counts summed over the group.
public struct LoopGroupPendingWork: Sendable, CustomStringConvertible {
    /// Each loop's snapshot, in the order of ``LoopGroup/loops``. Each is consistent for its loop;
    /// the loops are asked at the same moment, but each answers between its own jobs.
    public var loops: [LoopPendingWork]

    /// Jobs on the loops' ready queues, summed.
    public var readyJobs: Int { loops.reduce(0) { $0 + $1.readyJobs } }
    /// Pending timers (sleeps, `Task.sleep`s, scheduled callbacks), summed.
    public var timers: Int { loops.reduce(0) { $0 + $1.timers.count } }
    /// Tasks suspended in `readable`/`writable`, summed.
    public var descriptorWaits: Int { loops.reduce(0) { $0 + $1.descriptorWaits.count } }
    /// Futures and gathers that tasks await, summed.
    public var awaitedFutures: Int { loops.reduce(0) { $0 + $1.awaitedFutures } }
    /// Tasks awaiting an uncompleted `LoopFuture`, summed.
    public var futureAwaiters: Int { loops.reduce(0) { $0 + $1.futureAwaiters } }
    /// No loop has anything pending: what ``LoopGroup/shutdownGracefully(within:)`` waits for.
    public var isEmpty: Bool { loops.allSatisfy(\.isEmpty) }

    /// A header line with the sums, then each loop's ``LoopPendingWork/description``, indented,
    /// under `loop i:`.
    public var description: String {
        var lines = ["group pending work over \(loops.count) loop(s): \(readyJobs) ready job(s), \(timers) timer(s), \(descriptorWaits) descriptor wait(s), \(futureAwaiters) task(s) awaiting \(awaitedFutures) future(s)"]
        for (index, work) in loops.enumerated() {
            lines.append("loop \(index): " + work.description.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n  "))
        }
        return lines.joined(separator: "\n")
    }
}

extension LoopGroup {
    /// What every loop of the group is waiting for, per loop and summed. Any task: the loops are
    /// asked at once (each answers as ``Loop/pendingWork`` does from another thread: between its
    /// jobs, when it next turns), and the call returns when all have answered. A loop that has
    /// shut down answers empty.
    public var pendingWork: LoopGroupPendingWork {
        get async {
            let answers = await onEveryLoop { _, loop in loop.currentPendingWork() } ?? []
            return LoopGroupPendingWork(loops: zip(loops, answers).map { loop, work in work ?? LoopPendingWork(now: loop.now) })
        }
    }

    /// Installs an instrument on every loop of the group: `makeInstrument` is called once per loop,
    /// on that loop's thread, with the loop's index in ``loops`` and the loop, and what it returns
    /// is installed there (``Loop/addInstrument(_:)``): its hooks fire on that loop, and it knows
    /// which loop it watches from what it was made with.
    ///
    /// ```swift
    /// let perLoop = (0..<group.loops.count).map { _ in JobCounter() }   // a Sendable LoopInstrument
    /// let installed = await group.addInstruments { index, _ in perLoop[index] }
    /// // … perLoop[i] counts loop i's jobs …
    /// await group.removeInstruments(installed)
    /// ```
    ///
    /// Returns once every loop has installed its instrument (hooks fire from each loop's next tick
    /// on). Loops that have shut down are skipped. Any task.
    /// - Parameter makeInstrument: makes the instrument for the loop at an index; called on that loop.
    /// - Returns: the installation, for ``removeInstruments(_:)``.
    @discardableResult
    public func addInstruments(_ makeInstrument: @escaping @Sendable (_ index: Int, _ loop: Loop) -> any LoopInstrument) async -> LoopGroupInstruments {
        let installed = await onEveryLoop { index, loop -> LoopGroupInstruments.Installed in
            let instrument = makeInstrument(index, loop)
            loop.addInstrument(instrument)
            return LoopGroupInstruments.Installed(instrument)
        }
        return LoopGroupInstruments(instruments: installed ?? [])
    }

    /// Removes the instruments that ``addInstruments(_:)`` installed, each on its loop's thread.
    /// Returns once every loop has removed its own (no hook of theirs fires after the loop's current
    /// tick). Loops that have shut down are skipped. Any task.
    /// - Parameter installed: what ``addInstruments(_:)`` returned.
    public func removeInstruments(_ installed: LoopGroupInstruments) async {
        _ = await onEveryLoop { index, loop in
            if index < installed.instruments.count, let installed = installed.instruments[index] { loop.removeInstrument(installed.instrument) }
        }
    }

    /// Runs `body` on every loop's thread at once (in place on the calling loop, if it is one)
    /// and returns the results in loop order once all have run; `nil` in a slot whose loop had shut
    /// down (then `body` did not run there). The whole answer is `nil` only for a group of no loops.
    private func onEveryLoop<T: Sendable>(_ body: @escaping @Sendable (Int, Loop) -> T) async -> [T?]? {
        guard !loops.isEmpty else { return nil }
        let loops = self.loops
        return await withUnsafeContinuation { (continuation: UnsafeContinuation<[T?]?, Never>) in
            let results = Lock<(values: [T?], left: Int)>((Array(repeating: nil, count: loops.count), loops.count))
            for (index, loop) in loops.enumerated() {
                @Sendable func answer(_ value: T?) {
                    let done = results.withLock { state -> [T?]? in
                        state.values[index] = value
                        state.left -= 1
                        return state.left == 0 ? state.values : nil
                    }
                    if let done { continuation.resume(returning: done) }
                }
                loop.onLiveLoop({ answer(body(index, loop)) }, orElse: { answer(nil) })
            }
        }
    }
}

/// The instruments ``LoopGroup/addInstruments(_:)`` installed, one per loop, for
/// ``LoopGroup/removeInstruments(_:)``.
public struct LoopGroupInstruments: Sendable {
    /// An instrument, sent to the thread that removes it only to be handed back to its loop.
    struct Installed: @unchecked Sendable {
        // Unchecked Sendable: the instrument is used on its loop's thread only; elsewhere it is
        // only retained and released.
        let instrument: any LoopInstrument
        init(_ instrument: any LoopInstrument) { self.instrument = instrument }
    }
    /// Per loop, in the group's order; `nil` where the loop had shut down.
    let instruments: [Installed?]

    init(instruments: [Installed?]) {
        self.instruments = instruments
    }
}
