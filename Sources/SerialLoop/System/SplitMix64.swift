/// SplitMix64 (the generator behind Java's `SplittableRandom`): a seeded stream that is tiny, fast
/// and the same for a seed on every machine and build. Every seeded part of the package draws from
/// it — the test group's interleaving, the simulated network, socket chaos, the torture test and
/// the tests — so a printed seed replays anywhere. Not for anything that must be unpredictable.
package struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
