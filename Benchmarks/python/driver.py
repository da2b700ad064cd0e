"""Runs every benchmark several times, each in a fresh process, and writes RESULTS.md with medians
and, for every row, the ratio to each peer measured in the same run.

usage: python3 driver.py BINARY --reps R [--smoke] [--out RESULTS.md]
"""
import argparse
import datetime
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Operations per run (full mode). Smoke mode divides by 100 (at least 10 ops).
SIZES = {
    "yield": 1_000_000,
    "spawn-await": 300_000,
    "actor-ping-pong": 1_000_000,
    "task-actor-call": 1_000_000,
    "timers-fire": 1_000_000,
    "schedule-cancel": 1_000_000,
    "timer-op-1k-pending": 1_000_000,
    "timer-op-1M-pending": 1_000_000,
    "task-sleep-100k": 100_000,
    "socketpair-ping-pong": 200_000,
    "socketpair-growth": 200_000,
    "tcp-ping-pong": 100_000,
    "yield-growth": 1_000_000,
    "cross-thread-enqueue": 2_000_000,
    # Sequential round trips between two loops' threads (~5-10 µs each when they cross threads).
    "cross-loop-execute": 200_000,
    "cross-loop-actor-call": 200_000,
    "offload-round-trip": 100_000,
    "memory-per-sleeper": 100_000,
    "allocations-per-enqueue": 1_000_000,
    "allocations-per-yield": 1_000_000,
    "allocations-per-round-trip": 100_000,
    "run-until-complete-sleep0": 200_000,
    "call_soon": 1_000_000,
    "call_later(0)": 1_000_000,
}
# Executors that are too slow for the full size get fewer operations (per-op figures stay comparable).
# NIO's labelled actor rows hop through the global pool; NIO cancels a timer with a linear search.
SLOW = {
    ("yield", "NIO actor (hops to global pool)"): 20,
    ("spawn-await", "NIO actor (hops to global pool)"): 20,
    ("timer-op-1k-pending", "NIO scheduleCallback"): 10,
    ("timer-op-1M-pending", "NIO scheduleCallback"): 2000,
}
# Extra sizes for the same workload, reported as their own rows.
EXTRA = [("memory-per-sleeper", 1_000_000)]

# The targets: (workload, SerialLoop vs peer, limit, kind). kind "max": ratio <= limit.
TARGETS = [
    ("yield", "floor", 1.15, "max"),
    ("spawn-await", "floor", 1.15, "max"),
    ("schedule-cancel", "NIO scheduleCallback", 0.5, "max"),
    # Issue 12: schedule + cancel within 1.2x the timer floor (FloorTimers.swift).
    ("schedule-cancel", "floor", 1.2, "max"),
    ("timers-fire", "NIO scheduleTask", 0.5, "max"),
    ("timers-fire", "NIO scheduleCallback", 0.5, "max"),
    ("socketpair-ping-pong", "raw epoll", 1.25, "max"),
    ("cross-thread-enqueue", "floor", 1.25, "max"),
    ("offload-round-trip", "Dispatch.global + continuation", 1.2, "max"),
]

# Whole-program mode (`Loop.runMain`) against a peer: (workload, subject, peer, limit). Plain
# `Task {}` spawn+await within 1.15x of the floor's; yield and actor hops no slower than the
# `withLoop` rows (5 % allowed for noise).
SUBJECT_TARGETS = [
    ("spawn-await", "SerialLoop whole-program", "floor", 1.15),
    ("yield", "SerialLoop whole-program", "SerialLoop", 1.05),
    ("actor-ping-pong", "SerialLoop whole-program", "SerialLoop", 1.05),
    # Issue 12: tasks on readiness streams within 1.2x raw epoll and ahead of uvloop's add_reader;
    # reader callbacks within 1.1x raw epoll.
    ("socketpair-ping-pong", "SerialLoop readiness stream", "raw epoll", 1.2),
    ("socketpair-ping-pong", "SerialLoop readiness stream", "python uvloop add_reader", 1.0),
    # The same streams inside `loop.withReadiness` scopes (one cancellation handler per scope).
    ("socketpair-ping-pong", "SerialLoop readiness scope", "raw epoll", 1.2),
    ("socketpair-ping-pong", "SerialLoop readiness scope", "python uvloop add_reader", 1.0),
    ("socketpair-ping-pong", "SerialLoop addReader", "raw epoll", 1.1),
    # Issue 12: actor-to-actor calls on the loop within 1.15x the two-object floor (task prefers
    # the executor in both).
    ("actor-ping-pong", "SerialLoop", "floor (two objects)", 1.15),
    ("actor-ping-pong", "SerialLoop actor executor", "floor (two objects)", 1.15),
    # Issue 12 growth: each row against its own baseline row in the same process-per-row run.
    ("socketpair-growth", "SerialLoop readable, 10k idle fds", "SerialLoop readable, no idle fds", 1.1),
    ("yield-growth", "SerialLoop, 100k tasks in loop.sleep", "SerialLoop, alone", 1.1),
    # Issue 12: tasks on `readable` too (the stream rows above), against uvloop's callbacks.
    ("socketpair-ping-pong", "SerialLoop", "python uvloop add_reader", 1.0),
    # Issue 13: an installed no-op instrument within 10 % of the plain rows.
    ("yield", "SerialLoop + no-op instrument", "SerialLoop", 1.1),
    ("spawn-await", "SerialLoop + no-op instrument", "SerialLoop", 1.1),
    ("schedule-cancel", "SerialLoop + no-op instrument", "SerialLoop", 1.1),
    ("socketpair-ping-pong", "SerialLoop + no-op instrument", "SerialLoop", 1.1),
]

# Absolute targets: (workload, executor, limit, unit shown, what the target says).
ABSOLUTE_TARGETS = [
    ("actor-ping-pong", "SerialLoop whole-program", 15.0, "ns/call",
     "actor → actor from a task with no preference (whole-program mode) ≤ 15 ns per call"),
    ("timers-fire", "SerialLoop", 400.0, "CPU ns/timer", "timers fired at or below 400 CPU ns per timer"),
    ("allocations-per-round-trip", "SerialLoop readiness stream", 0.02, "allocs/round-trip",
     "0 heap allocations per round trip on the stream path (below 0.02: warm-up leftovers)"),
]

# How the python rows are driven (the Swift rows carry their own note, see `--list`).
PYTHON_METHODS = {
    "run-until-complete-sleep0": "python/talk_benchmarks.py: n × `loop.run_until_complete(asyncio.sleep(0))`",
    "call_soon": "python/talk_benchmarks.py: n × `loop.call_soon(cb)`, run until the last ran",
    "call_later(0)": "python/talk_benchmarks.py: n × `loop.call_later(0, cb)`, run until the last ran",
    "socketpair-ping-pong": "python/talk_benchmarks.py: `add_reader` callbacks on both ends, `os.read`/`os.write` of one byte",
}


# Instruction counts (valgrind callgrind, user space, all threads): deterministic, so they settle
# "within x of the floor" questions that wall-clock medians on a noisy 2-core VM cannot.
# (workload, executors, small n, large n): per-op figure = (Ir(large) - Ir(small)) / (large - small).
INSTRUCTIONS = [
    ("yield", ["SerialLoop", "SerialLoop whole-program", "floor"], 20_000, 120_000),
    ("spawn-await", ["SerialLoop", "SerialLoop whole-program", "floor"], 20_000, 120_000),
    ("actor-ping-pong", ["SerialLoop", "SerialLoop actor executor", "SerialLoop whole-program", "default", "floor", "floor (two objects)"], 20_000, 120_000),
    ("schedule-cancel", ["SerialLoop", "floor", "NIO scheduleCallback"], 20_000, 120_000),
    ("task-actor-call", ["SerialLoop", "SerialLoop actor executor", "floor", "floor (two objects)"], 20_000, 120_000),
    ("socketpair-ping-pong", ["SerialLoop", "SerialLoop readiness stream", "SerialLoop readiness scope", "SerialLoop whole-program",
                              "SerialLoop addReader", "task floor (epoll + continuations)", "raw epoll"], 5_000, 25_000),
    # Growth: the same work with and without the idle load; setup (100k sleepers, 10k descriptors)
    # cancels in the difference. About 3 minutes under valgrind in all.
    ("yield-growth", ["SerialLoop, alone", "SerialLoop, 100k tasks in loop.sleep"], 20_000, 120_000),
    ("socketpair-growth", ["SerialLoop readable, no idle fds", "SerialLoop readable, 10k idle fds"], 5_000, 25_000),
    ("tcp-ping-pong", ["SerialLoopNet"], 5_000, 25_000),
]


def instructions(binary, workload, executor, n):
    output = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", binary,
         "--workload", workload, "--executor", executor, "--n", str(n)],
        capture_output=True, text=True, timeout=900)
    for line in output.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split("Collected :")[1].split()[0])
    sys.exit(f"callgrind failed: {workload} {executor}\n{output.stderr[-2000:]}")


def instruction_rows(binary):
    """Returns [(workload, executor, instructions per op)], or [] without valgrind."""
    if shutil.which("valgrind") is None or shutil.which("strip") is None:
        print("valgrind or strip missing: instruction counts skipped")
        return []
    # valgrind cannot read the debug info Swift emits: count on a copy without it.
    stripped = os.path.join(os.path.dirname(os.path.abspath(binary)), "SerialLoopBenchmarks-stripped")
    subprocess.run(["strip", "--strip-debug", "-o", stripped, binary], check=True)
    rows = []
    for workload, executors, small, large in INSTRUCTIONS:
        for executor in executors:
            per_op = (instructions(stripped, workload, executor, large) - instructions(stripped, workload, executor, small)) / (large - small)
            rows.append((workload, executor, per_op))
            print(f"{workload:28} {executor:26} {per_op:12.0f} instructions/op (callgrind)", flush=True)
    return rows


def target_pairs():
    """Every (workload, subject, peer) a ratio target compares."""
    pairs = [(workload, "SerialLoop", peer) for workload, peer, _, _ in TARGETS]
    pairs += [(workload, subject, peer) for workload, subject, peer, _ in SUBJECT_TARGETS]
    return pairs


def paired_ratios(command_of, count):
    """Each target's ratio measured in pairs: the two rows run back to back in fresh processes,
    in alternating order, `count` times; returns {(workload, subject, peer): [ratios]}.

    Why, besides the medians: on this VM a row's speed drifts with the host's load over minutes
    (the same binary gave 330-700 ns per yield within one minute), and the medians of a full run
    take each row's 5 samples minutes apart. A pair's two processes run seconds apart, under the
    same load, so the median of the pairs' ratios is the steadier estimate of the ratio itself."""
    ratios = {}
    for rep in range(count):
        for workload, subject, peer in target_pairs():
            first, second = command_of.get((workload, subject)), command_of.get((workload, peer))
            if first is None or second is None:
                continue
            order = [(subject, first), (peer, second)]
            if rep % 2:
                order.reverse()
            values = {}
            for executor, command in order:
                _, _, value, _ = run(command)
                values[executor] = value
            if values[subject] is None or not values[peer]:
                continue
            ratios.setdefault((workload, subject, peer), []).append(values[subject] / values[peer])
            print(f"pair {rep + 1}: {workload} {subject} ÷ {peer} = {values[subject] / values[peer]:.3f}", flush=True)
    return ratios


def run(command):
    """Returns (workload, executor, value, unit), or (workload, executor, None, reason) for a row
    that cannot run on this machine (the binary printed SKIP)."""
    output = subprocess.run(command, capture_output=True, text=True, timeout=900)
    for line in output.stdout.splitlines():
        if line.startswith("RESULT\t"):
            _, workload, executor, value, unit = line.split("\t")
            return workload, executor, float(value), unit
        if line.startswith("SKIP\t"):
            _, workload, executor, reason = line.split("\t", 3)
            return workload, executor, None, reason
    sys.exit(f"benchmark failed: {' '.join(command)}\n{output.stdout}\n{output.stderr}")


def previous_medians(path):
    """The medians table of an earlier RESULTS.md (full runs only), as {(label, executor): value}."""
    previous = {}
    if not os.path.exists(path):
        return previous
    with open(path) as f:
        text = f.read()
    if "Mode: full" not in text:
        return previous
    for line in text.split("## ")[0].splitlines() if "## " in text else text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in ("workload", "---"):
            try:
                previous[(cells[0], cells[1])] = float(cells[2])
            except ValueError:
                pass
    return previous


def ratio(value, other):
    r = value / other
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "..", "RESULTS.md"))
    parser.add_argument("--python-loops", default="asyncio,uvloop")
    parser.add_argument("--no-instructions", action="store_true", help="skip the callgrind instruction counts")
    parser.add_argument("--pairs", type=int, default=7, help="paired runs per target ratio (see paired_ratios)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the per-repetition row order (default: random, printed)")
    args = parser.parse_args()
    # Each repetition runs every row once, in its own shuffled order, so a load drift on the shared
    # machine lands on all rows alike instead of on whichever rows happen to run during it.
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"row order seed: {seed} (rerun the same order with --seed {seed})", flush=True)
    shuffler = random.Random(seed)

    listing = subprocess.run([args.binary, "--list"], capture_output=True, text=True, check=True).stdout
    jobs = []
    methods = {}  # (workload, executor) -> one-line note on how the row is measured
    for line in listing.splitlines():
        workload, executor, unit, method = line.split("\t")
        methods[(workload, executor)] = method
        n = SIZES[workload] // SLOW.get((workload, executor), 1)
        label = workload
        jobs.append((label, [args.binary, "--workload", workload, "--executor", executor], n))
        for extra_workload, extra_n in EXTRA:
            if extra_workload == workload:
                jobs.append((f"{workload} (1M)", [args.binary, "--workload", workload, "--executor", executor], extra_n))
    for loop in filter(None, args.python_loops.split(",")):
        for workload in ["run-until-complete-sleep0", "call_soon", "call_later(0)", "socketpair-ping-pong"]:
            jobs.append((workload, [sys.executable, os.path.join(HERE, "talk_benchmarks.py"), "--loop", loop, "--workload", workload], SIZES[workload]))
            methods[(workload, f"python {loop} add_reader" if workload == "socketpair-ping-pong" else f"python {loop}")] = f"{loop}: {PYTHON_METHODS[workload]}"

    command_of = {}  # (label, executor) -> the full command line of that row
    results = {}  # (label, executor) -> (values, unit)
    skipped = {}  # (label, executor) -> reason
    commands = []
    for rep in range(args.reps):
        order = list(jobs)
        shuffler.shuffle(order)
        for label, command, n in order:
            if args.smoke:
                n = max(10, n // 100)
            full = command + ["--n", str(n)]
            if rep == 0:
                commands.append(" ".join(f"'{part}'" if " " in part or "(" in part else part for part in full))
            _, executor, value, unit = run(full)
            if value is None:
                skipped[(label, executor)] = unit
                print(f"{label:28} {executor:26} SKIPPED: {unit}", flush=True)
                continue
            results.setdefault((label, executor), ([], unit))[0].append(value)
            command_of[(label, executor)] = full
            print(f"{label:28} {executor:26} {value:12.2f} {unit}", flush=True)

    paired = paired_ratios(command_of, 1 if args.smoke else args.pairs)
    counted = [] if args.smoke or args.no_instructions else instruction_rows(args.binary)

    medians = {key: statistics.median(values) for key, (values, _) in results.items()}
    # Issue 12: "every other row no worse than in today's RESULTS.md (±5 %)": the table this run
    # replaces, read before it is overwritten.
    previous = {} if args.smoke else previous_medians(args.out)
    units = {key: unit for key, (_, unit) in results.items()}
    labels = []
    for label, _, _ in jobs:
        if label not in labels:
            labels.append(label)

    lines = []
    lines.append("# SerialLoop benchmark results\n")
    lines.append(f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except Exception:
        pass
    swift = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    lines.append(f"- Machine: {os.cpu_count()} cores, {cpu}, Linux {platform.release()}; {swift}; Python {platform.python_version()}")
    lines.append(f"- Mode: {'SMOKE (tiny N, not meaningful)' if args.smoke else 'full'}; {args.reps} repetitions per row, each in a fresh process, rows in a new shuffled order each repetition (seed {seed}); figures are medians")
    invocation = " ".join(["python3", "python/driver.py"] + sys.argv[1:])
    lines.append(f"- Command: `Benchmarks/run.sh{' --smoke' if args.smoke else ''}` (in `Benchmarks/`: `swift build -c release`, then `{invocation}`)")
    lines.append("- The machine is shared and noisy: compare ratios within this run, not absolute figures across runs.\n")
    lines.append("Ratio column: this row's median divided by each peer's median in the same workload (below 1 = faster / smaller).\n")
    lines.append("| workload | executor | median | unit | ratio to peers |")
    lines.append("|---|---|---:|---|---|")
    for label in labels:
        rows = [(executor, medians[(l, executor)]) for (l, executor) in medians if l == label]
        for executor, value in rows:
            ratios = ", ".join(
                f"{ratio(value, other)}× {peer}" for peer, other in rows if peer != executor and other > 0
            )
            lines.append(f"| {label} | {executor} | {value:.2f} | {units[(label, executor)]} | {ratios or '—'} |")
        for (l, executor), reason in skipped.items():
            if l == label:
                lines.append(f"| {label} | {executor} | skipped | — | {reason} |")

    if counted:
        lines.append("\n## Instructions per operation (callgrind, user space, deterministic)\n")
        lines.append("Counted under valgrind (`--tool=callgrind`) as the difference between two sizes, so start-up")
        lines.append("cancels. Kernel work (syscalls) is not counted, and valgrind serialises threads: this is the")
        lines.append("noise-free view of what each executor asks the CPU to do, not a time.\n")
        lines.append("| workload | executor | instructions/op | ratio to peers |")
        lines.append("|---|---|---:|---|")
        for workload, executor, per_op in counted:
            peers = ", ".join(f"{ratio(per_op, other)}× {peer}" for w, peer, other in counted if w == workload and peer != executor)
            lines.append(f"| {workload} | {executor} | {per_op:.0f} | {peers} |")

    task_rows = [(executor, value) for (label, executor), value in medians.items()
                 if label == "socketpair-ping-pong" and executor.startswith("SerialLoop") and executor != "SerialLoop addReader"]
    task_floor = medians.get(("socketpair-ping-pong", "task floor (epoll + continuations)"))
    if task_rows and task_floor:
        counts = {executor: per_op for w, executor, per_op in counted if w == "socketpair-ping-pong"}
        floor_count = counts.get("task floor (epoll + continuations)")
        lines.append("\n## Tasks waiting on descriptors, against the task floor\n")
        lines.append("The task floor (TaskFloorEpoll.swift) is the least a task awaiting readiness costs in Swift 6.3.1:")
        lines.append("one continuation per wait on a bare executor that polls epoll, no cancellation, no errors. Raw epoll")
        lines.append("has no task at all, so tasks cannot reach it; this is how far each task row is from the floor.\n")
        lines.append("| executor | wall ÷ task floor | instructions ÷ task floor |")
        lines.append("|---|---:|---:|")
        for executor, value in sorted(task_rows):
            instructions = f"{counts[executor] / floor_count:.2f}" if floor_count and executor in counts else "—"
            lines.append(f"| {executor} | {value / task_floor:.2f} | {instructions} |")
        raw = medians.get(("socketpair-ping-pong", "raw epoll"))
        if raw:
            lines.append(f"| (task floor ÷ raw epoll) | {task_floor / raw:.2f} | — |")

    lines.append("\n## Targets (SerialLoop ÷ peer, this run)\n")
    lines.append("*ratio*: the row's median over the peer's median (the full run, samples minutes apart). *paired*:")
    lines.append(f"the median of {args.pairs if not args.smoke else 1} ratios each measured from the two rows run back to back (alternating")
    lines.append("order) after the full run — the steadier estimate on this VM, whose speed drifts over minutes; its")
    lines.append("range is in brackets. *met* reads the paired figure where there is one, the instruction rows their own.\n")
    lines.append("| workload | peer | ratio | paired [range] | target | met |")
    lines.append("|---|---|---:|---|---|---|")

    def paired_cell(workload, subject, peer):
        values = paired.get((workload, subject, peer))
        if not values:
            return "—", None
        middle = statistics.median(values)
        return f"{middle:.2f} [{min(values):.2f}–{max(values):.2f}]", middle

    for workload, peer, limit, _ in TARGETS:
        ours, theirs = medians.get((workload, "SerialLoop")), medians.get((workload, peer))
        if ours is None or theirs is None:
            continue
        measured = ours / theirs
        cell, steady = paired_cell(workload, "SerialLoop", peer)
        verdict = steady if steady is not None else measured
        lines.append(f"| {workload} | {peer} | {measured:.2f} | {cell} | ≤ {limit} | {'yes' if verdict <= limit else 'no'} |")
        counts = {executor: per_op for w, executor, per_op in counted if w == workload}
        # Instruction counts leave out the kernel, so they only stand in for time where little
        # happens there (not for socketpair ping-pong, whose time is ~75 % syscalls).
        if workload != "socketpair-ping-pong" and "SerialLoop" in counts and peer in counts:
            r = counts["SerialLoop"] / counts[peer]
            lines.append(f"| {workload} (instructions) | {peer} | {r:.2f} | — | ≤ {limit} | {'yes' if r <= limit else 'no'} |")
    for workload, subject, peer, limit in SUBJECT_TARGETS:
        ours, theirs = medians.get((workload, subject)), medians.get((workload, peer))
        if ours is None or theirs is None:
            continue
        measured = ours / theirs
        cell, steady = paired_cell(workload, subject, peer)
        verdict = steady if steady is not None else measured
        lines.append(f"| {workload} ({subject}) | {peer} | {measured:.2f} | {cell} | ≤ {limit} | {'yes' if verdict <= limit else 'no'} |")
        counts = {executor: per_op for w, executor, per_op in counted if w == workload}
        if workload.endswith("-growth") and subject in counts and peer in counts:
            r = counts[subject] / counts[peer]
            lines.append(f"| {workload} ({subject}, instructions) | {peer} | {r:.2f} | — | ≤ {limit} | {'yes' if r <= limit else 'no'} |")
    for workload, executor, limit, unit, what in ABSOLUTE_TARGETS:
        value = medians.get((workload, executor))
        if value is None:
            continue
        lines.append(f"| {workload} ({executor}): {what} | — | {value:.3g} {unit} | — | ≤ {limit:g} | {'yes' if value <= limit else 'no'} |")
    small, large = medians.get(("timer-op-1k-pending", "SerialLoop")), medians.get(("timer-op-1M-pending", "SerialLoop"))
    if small and large:
        lines.append(f"| timer op, 1M vs 1k pending | itself | {large / small:.2f} | — | ≤ 2 | {'yes' if large / small <= 2 else 'no'} |")
    allocations = medians.get(("allocations-per-enqueue", "SerialLoop"))
    if allocations is not None:
        lines.append(f"| allocations per same-thread `execute` | — | {allocations:.4f} | — | 0 | {'yes' if allocations == 0 else 'no'} |")
    ours, floor = medians.get(("allocations-per-yield", "SerialLoop")), medians.get(("allocations-per-yield", "floor"))
    if ours is not None and floor is not None:
        extra = ours - floor
        lines.append(f"| allocations per same-thread job enqueue (per yield, above the floor's) | floor | {extra:+.4f} | — | 0 | {'yes' if extra <= 0.0005 else 'no'} |")

    compared = [(key, previous[key], medians[key]) for key in medians
                if key in previous and key[1].startswith("SerialLoop") and previous[key] > 0]
    if compared:
        worse = [(key, before, now) for key, before, now in compared if now > before * 1.05]
        lines.append(f"\n### SerialLoop rows against the RESULTS.md this run replaced (±5 %)\n")
        lines.append(f"{len(compared)} SerialLoop rows compared, {len(worse)} worse by more than 5 % "
                     "(wall-clock medians on this shared VM move by ±20 % between runs: read with the ratios and instruction counts).\n")
        if worse:
            lines.append("| workload | executor | before | now | ratio |")
            lines.append("|---|---|---:|---:|---:|")
            for (label, executor), before, now in worse:
                lines.append(f"| {label} | {executor} | {before:.2f} | {now:.2f} | {now / before:.2f} |")

    lines.append("\n## How each row is measured\n")
    lines.append("Each peer is driven the fastest way its own documentation allows (issue 12); where a row")
    lines.append("deliberately is not, its name and note say so.\n")
    lines.append("| workload | executor | method |")
    lines.append("|---|---|---|")
    seen = set()
    for label, _, _ in jobs:
        for (l, executor) in list(results) + list(skipped):
            if l != label or (l, executor) in seen:
                continue
            seen.add((l, executor))
            workload = label.split(" (")[0] if label.endswith(")") and label not in SIZES else label
            lines.append(f"| {label} | {executor} | {methods.get((workload, executor)) or '—'} |")

    lines.append("\n## Commands (first repetition)\n")
    lines.append("```")
    lines.extend(commands)
    lines.append("```")
    notes = os.path.join(HERE, "..", "NOTES.md")
    if os.path.exists(notes):
        lines.append("")
        with open(notes) as f:
            lines.append(f.read())
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
