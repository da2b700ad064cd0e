"""Tests of the performance gate's decisions (perf_gate.py), without valgrind: the measurement is
replaced by fixed figures, so each test says exactly what the gate must do with them.
Run: python3 -m unittest Benchmarks/python/test_perf_gate.py (.ci/perf-gate.sh runs it first)."""
import contextlib
import io
import json
import os
import sys
import tempfile
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import perf_gate  # noqa: E402

BASE = {row[0]: 1000.0 for row in perf_gate.ROWS}


class Compare(unittest.TestCase):
    def test_within_threshold_passes(self):
        now = dict(BASE, **{"yield": 1029.9})
        _, failures = perf_gate.compare(BASE, now, 3.0)
        self.assertEqual(failures, [])

    def test_over_threshold_fails_naming_the_row(self):
        now = dict(BASE, **{"yield": 1030.1})
        lines, failures = perf_gate.compare(BASE, now, 3.0)
        self.assertEqual(len(failures), 1)
        self.assertIn("yield", failures[0])
        self.assertIn("+3.01 %", failures[0])
        self.assertTrue(any("FAIL" in line and line.startswith("yield") for line in lines))

    def test_improvement_passes_and_says_so(self):
        now = dict(BASE, **{"yield": 900.0})
        lines, failures = perf_gate.compare(BASE, now, 3.0)
        self.assertEqual(failures, [])
        self.assertTrue(any("better" in line for line in lines))

    def test_row_without_baseline_fails(self):
        base = dict(BASE)
        del base["yield"]
        _, failures = perf_gate.compare(base, dict(BASE), 3.0)
        self.assertEqual(len(failures), 1)
        self.assertIn("no baseline", failures[0])

    def test_baseline_row_no_longer_measured_fails(self):
        now = dict(BASE)
        del now["yield"]
        _, failures = perf_gate.compare(BASE, now, 3.0)
        self.assertEqual(len(failures), 1)
        self.assertIn("not measured", failures[0])


class EndToEnd(unittest.TestCase):
    """main() with the measurement replaced: exit codes, the retry of a failing row, the baseline file."""

    def setUp(self):
        self.directory = tempfile.TemporaryDirectory()
        self.baseline = os.path.join(self.directory.name, "baseline.json")
        with open(self.baseline, "w") as f:
            json.dump({"comment": "test", "threshold_percent": 3.0, "rows": BASE}, f)
        self.calls = {}

    def tearDown(self):
        self.directory.cleanup()

    def run_gate(self, figures, *arguments):
        """figures: row -> list of successive measurements (the last one repeats)."""
        def measure_row(binary, row):
            n = self.calls.get(row[0], 0)
            self.calls[row[0]] = n + 1
            values = figures.get(row[0], [1000.0])
            return values[min(n, len(values) - 1)]
        output = io.StringIO()
        with mock.patch.object(perf_gate, "measure_row", measure_row), \
                mock.patch.object(perf_gate, "strip_binary", lambda binary: binary), \
                mock.patch.object(perf_gate.shutil, "which", lambda name: "/usr/bin/" + name), \
                contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            status = perf_gate.main(["binary", "--baseline", self.baseline, *arguments])
        return status, output.getvalue()

    def test_unchanged_passes(self):
        status, output = self.run_gate({})
        self.assertEqual(status, 0, output)
        self.assertIn("performance gate passed", output)

    def test_injected_regression_fails_after_two_confirming_runs(self):
        status, output = self.run_gate({"cross-thread enqueue": [1040.0]})
        self.assertEqual(status, 1, output)
        self.assertIn("cross-thread enqueue: 1000.0 -> 1040.0", output)
        self.assertEqual(self.calls["cross-thread enqueue"], 3)
        self.assertEqual(self.calls["yield"], 1)

    def test_one_outlier_does_not_fail(self):
        status, output = self.run_gate({"cross-thread enqueue": [1040.0, 1001.0, 1050.0]})
        self.assertEqual(status, 0, output)

    def test_doctored_baseline_fails(self):
        with open(self.baseline, "w") as f:
            json.dump({"comment": "doctored", "rows": dict(BASE, **{"spawn+await": 950.0})}, f)
        status, output = self.run_gate({})
        self.assertEqual(status, 1, output)
        self.assertIn("spawn+await", output)

    def test_update_needs_a_reason(self):
        status, output = self.run_gate({}, "--update-baseline")
        self.assertEqual(status, 2)
        self.assertIn("--reason", output)

    def test_update_writes_every_row_and_the_reason(self):
        status, _ = self.run_gate({"yield": [1234.56, 1300.0, 1200.0]}, "--update-baseline", "--reason", "because")
        self.assertEqual(status, 0)
        with open(self.baseline) as f:
            written = json.load(f)
        self.assertEqual(written["comment"], "because")
        self.assertEqual(set(written["rows"]), set(BASE))
        self.assertEqual(written["rows"]["yield"], 1234.6)  # the median of 3 runs
        self.assertEqual(self.calls["yield"], 3)

    def test_a_subset_is_compared_with_its_own_baseline_rows_only(self):
        status, output = self.run_gate({}, "--row", "yield", "--row", "actor hop, loop executor")
        self.assertEqual(status, 0, output)
        self.assertEqual(list(self.calls), ["yield", "actor hop, loop executor"])

    def test_unknown_row_is_a_usage_error(self):
        status, _ = self.run_gate({}, "--row", "nonsense")
        self.assertEqual(status, 2)


if __name__ == "__main__":
    unittest.main()
