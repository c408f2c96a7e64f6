"""benchmarks/stream_memory.py: the JSON it promises, and that its slope tells a flat run from one that keeps rows."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "stream_memory.py")
_SPEC = importlib.util.spec_from_file_location("stream_memory", SCRIPT)
stream_memory = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(stream_memory)
MIB = 2**20


def test_small_stream_prints_complete_json_with_flat_memory(tmp_path):
    output = tmp_path / "report.json"
    length, pool, batch = 100_000, 1_000, 256
    command = [SCRIPT, "--stream-length", str(length), "--pool-size", str(pool), "--batch-size", str(batch)]
    result = subprocess.run(
        [sys.executable, *command, "--output", str(output)], capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout)  # stdout is only the JSON
    assert report == json.loads(output.read_text())
    assert f"{length} tasks read" in result.stderr  # progress on stderr
    assert (report["stream_length"], report["pool_size"], report["batch_size"]) == (length, pool, batch)
    assert (report["strategy"], report["retire_threshold"]) == ("uniform", None)
    # The whole stream is read; uniform retires every task it serves, B a round, and every task read after the first
    # fill replaced one (the last round finds too few to replace all it served: those stay).
    assert report["tasks_read"] == length
    assert report["retired"] == length - pool
    assert (report["rounds"] - 1) * batch < report["retired"] <= report["rounds"] * batch
    tenths = report["at_each_10_percent"]
    assert len(tenths) == 10 and tenths[-1]["tasks_read"] == length
    for k, entry in enumerate(tenths, start=1):
        assert length * k // 10 <= entry["tasks_read"] < length * k // 10 + batch
    samples = report["samples"]
    # The start (the pool filled) and every 1% of the stream after it (the fill passed the first 1%).
    assert len(samples["tasks_read"]) == len(samples["rss_mib"]) == 1 + 99
    assert samples["tasks_read"] == sorted(samples["tasks_read"]) and samples["tasks_read"][0] == pool
    assert 0 < report["rss_before_pool_mib"] <= report["rss_start_mib"] <= report["rss_max_mib"]
    assert report["rss_max_mib"] == max(samples["rss_mib"]) and report["peak_rss_mib"] > 0
    # Flat: what a run that kept every row would add (533 bytes a row here) is 53 MB over this stream; the pool's
    # bookkeeping adds under a tenth of it, in the fitted slope and in the samples' spread alike.
    assert 400 < report["row_bytes"] < 1000
    kept = report["kept_rows_bytes_per_1e5_tasks"]
    assert kept == report["row_bytes"] * 1e5
    assert abs(report["slope_bytes_per_1e5_tasks"]) < 0.1 * kept
    assert (report["rss_max_mib"] - report["rss_start_mib"]) * MIB < 0.1 * kept * length / 1e5
    assert report["tracemalloc"] is None


class KeepingPoolRounds(stream_memory.PoolRounds):
    """A pool that keeps every row it reads from the stream: the O(stream) memory the benchmark must catch."""

    def __init__(self, *args, **kwargs):
        self.kept = []
        super().__init__(*args, **kwargs)
        next_row = self.pool.stream.next_row

        def keeping_next_row():
            row, index = next_row()
            self.kept.append(row)
            return row, index

        self.pool.stream.next_row = keeping_next_row


@pytest.mark.parametrize("keeps_rows", [False, True])
def test_slope_tells_a_pool_that_keeps_its_rows(monkeypatch, keeps_rows):
    if keeps_rows:
        monkeypatch.setattr(stream_memory, "PoolRounds", KeepingPoolRounds)
    report = stream_memory.measure(50_000, 500, 128, "uniform", None, None, trace=True)
    assert report["tasks_read"] == 50_000
    kept, slope, heap = (
        report["kept_rows_bytes_per_1e5_tasks"],
        report["slope_bytes_per_1e5_tasks"],
        report["tracemalloc"],
    )
    if keeps_rows:  # every row read stays: at least its own bytes per task, in resident memory and in the heap
        assert slope > 0.8 * kept and heap["slope_bytes_per_1e5_tasks"] > 0.8 * kept
        assert heap["peak_mib"] * MIB > 0.8 * kept / 2
    else:
        assert abs(slope) < 0.1 * kept and abs(heap["slope_bytes_per_1e5_tasks"]) < 0.02 * kept
        assert 0 < heap["peak_mib"] * MIB < 0.2 * kept / 2  # the pool, its selector and the stream, not the rows read
    assert [entry["python_heap_mib"] > 0 for entry in report["at_each_10_percent"]] == [True] * 10
