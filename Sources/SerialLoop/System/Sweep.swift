extension Dictionary {
    /// The loop's one policy for side tables keyed by things that end without telling the table
    /// (a timer's creation site, a wait's start time, a runtime sleep's owner): their entries are
    /// not removed one by one but swept, all at once, when the table has grown to twice the live
    /// count plus 64. Amortised O(1) per insertion, and the table stays within about 2× what is live.
    /// - Parameters:
    ///   - liveCount: how many keys can still be live (e.g. the pending timers).
    ///   - isLive: makes the test of a key, only when a sweep is due (it may build an index first).
    @inline(__always)
    mutating func sweepWhenGrown(liveCount: Int, keeping isLive: () -> (Key) -> Bool) {
        guard count >= 2 * liveCount + 64 else { return }
        let keep = isLive()
        self = filter { keep($0.key) }
    }
}
