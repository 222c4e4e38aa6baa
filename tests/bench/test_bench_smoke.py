"""The `make bench` smoke run (bench/README.md): bench/run.py --smoke into a temporary directory, then
bench/render.py; checks results.json has every benchmark, the documented schema and positive
figures, and that the rendered page and plots exist. Figures are never compared with each other.
Run by scripts/test-bench.sh (suite `bench-smoke`)."""
import hashlib
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ITEMS = {"lock_increment", "contended", "bulk_copy", "attach_cost", "dotnet_lock", "pingpong",
         "pythonnet_handoff", "wakeup", "queue", "tensor"}
sys.path.insert(0, str(ROOT / "bench"))
import queue_bench  # noqa: E402  (bench/queue_bench.py: its case list)
import tensor_bench  # noqa: E402  (bench/tensor_bench.py: its case list)
import wakeup  # noqa: E402  (bench/wakeup.py: its case list)
CHECKED_IN = [ROOT / "docs/benchmarks.md", ROOT / "docs/benchmarks/results.json"]


def _digest(paths):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    before = _digest(CHECKED_IN)
    run = subprocess.run([sys.executable, str(ROOT / "bench/run.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    doc = out / "doc" / "benchmarks.md"
    render = subprocess.run([sys.executable, str(ROOT / "bench/render.py"), str(out / "results.json"),
                             str(doc), "--copy-json"], capture_output=True, text=True, timeout=120)
    assert render.returncode == 0, render.stderr[-3000:]
    return {"results": json.loads((out / "results.json").read_text()), "doc": doc, "before": before}


def test_top_level_schema_and_machine(smoke):
    r = smoke["results"]
    assert r["schema"] == 1 and r["smoke"] is True
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", r["date"])
    assert re.fullmatch(r"[0-9a-f]{40}", r["git_commit"])
    assert r["duration_s"] > 0
    m = r["machine"]
    for key in ("cpu_model", "kernel", "glibc", "dotnet_runtime"):
        assert isinstance(m[key], str) and m[key], key
    assert m["cores"] >= 1 and m["mem_available_mib"] > 0 and m["shm_free_mib"] > 0
    assert len(m["load_average_start"]) == 3 and len(m["load_average_end"]) == 3
    assert m["interpreters"] and all(re.fullmatch(r"3\.\d+\.\d+", i["version"]) for i in m["interpreters"])
    assert all(i["lock_backend"] in ("c", "ctypes") for i in m["interpreters"])


def test_every_benchmark_has_positive_figures_with_units(smoke):
    b = smoke["results"]["benchmarks"]
    assert set(b) == ITEMS
    for name, item in b.items():
        assert item["title"] and item["unit"] and isinstance(item["higher_is_better"], bool), name
        if item.get("skipped"):
            assert name == "pythonnet_handoff" and item["cases"] == [], name
            continue
        assert item["cases"], name
        for case in item["cases"]:
            if name in ("wakeup", "queue", "tensor") and case.get("skipped"):
                # The C floors say so when there is no compiler, the DLPack rows when PyTorch is not
                # installed; nothing else may be missing.
                assert (case["case"].startswith("floor-") and shutil.which("cc") is None
                        or case["case"].startswith("dlpack-") and "PyTorch" in case["skipped"]), case
                continue
            assert math.isfinite(case["value"]) and case["value"] > 0, (name, case)


def test_lock_increment_reports_every_idiom_baseline_and_lock_path(smoke):
    """Every idiom of the seeds (Array and Value; locked block and synchronized accessor) against
    multiprocessing, on both lock paths (the compiled one where this interpreter has it)."""
    cases = smoke["results"]["benchmarks"]["lock_increment"]["cases"]
    interps = {i["version"]: i["lock_backend"] for i in smoke["results"]["machine"]["interpreters"]}
    idioms = ("lock", "sync", "value-lock", "value-sync")
    for version, backend in interps.items():
        mine = [c for c in cases if c["interpreter"] == version]
        got = {(c["case"], c["impl"], c["backend"]) for c in mine}
        for idiom in idioms:
            assert (idiom, "multiprocessing", "semaphore") in got, (version, idiom)
            for path in {backend, "ctypes"}:
                assert (idiom, "sharedbridge", path) in got, (version, idiom, path)


def test_contended_has_every_variant_and_process_count(smoke):
    cases = smoke["results"]["benchmarks"]["contended"]["cases"]
    got = {(c["variant"], c["processes"]) for c in cases}
    for n in (1, 2, 4):
        for v in ("multiprocessing.Array (Python only)", "SharedBridge, Python only", "SharedBridge, C# only"):
            assert (v, n) in got
    assert ("SharedBridge, 2 C# + 2 Python", 4) in got


@pytest.mark.parametrize("item, per_size", [("bulk_copy", 9), ("attach_cost", 4)])
def test_sized_items_cover_every_case_at_every_size(smoke, item, per_size):
    cases = smoke["results"]["benchmarks"][item]["cases"]
    sizes = {c["bytes"] for c in cases}
    assert len(sizes) >= 2
    for s in sizes:
        assert len([c for c in cases if c["bytes"] == s]) == per_size, (item, s)


def test_dotnet_lock_has_three_locks_uncontended_and_two_threads(smoke):
    item = smoke["results"]["benchmarks"]["dotnet_lock"]
    assert item["benchmarkdotnet"] and item["toolchain"]
    assert {c["threads"] for c in item["cases"]} == {1, 2}
    assert len({c["case"] for c in item["cases"]}) == 3


def _expected_regimes():
    return ["one-cpu", "two-cpus", "free"] if len(os.sched_getaffinity(0)) > 1 else ["one-cpu"]


def test_wakeup_has_every_case_in_every_regime_and_left_no_segment(smoke):
    item = smoke["results"]["benchmarks"]["wakeup"]
    regimes = _expected_regimes()
    assert [g["regime"] for g in item["regimes"]] == regimes
    # One CPU only: two-cpus and free are the same as one-cpu, said once instead of run again.
    assert (item["single_cpu"] is None) == (len(regimes) == 3)
    a = item["regimes"][0]["cpus"][0]
    if len(regimes) == 3:
        two = item["regimes"][1]["cpus"]
        assert len(two) == 2 and two[0] == a and two[1] != a and two[1] in os.sched_getaffinity(0), two
    assert item["round_trips"] > 0 and item["rounds"] >= 1
    for regime in regimes:
        mine = [c for c in item["cases"] if c["regime"] == regime]
        assert [c["case"] for c in mine] == wakeup.case_keys(), regime
    assert len(item["cases"]) == len(regimes) * len(wakeup.case_keys())
    kinds = {c["kind"] for c in item["cases"]}
    assert kinds >= {"event", "semaphore", "condition", "pipe", "futex word", "cache line"}
    for c in item["cases"]:
        assert c["label"] and c["pair"] and c["driver"] in ("C", "C#", "Python"), c
        assert "error" not in c, c
        assert c["leftover_segments"] == 0, c
        assert c["cpus"] == {"free": None, "one-cpu": [a], "two-cpus": item["regimes"][1]["cpus"]}[c["regime"]], c
        if c.get("skipped"):
            continue
        if not c.get("capped"):
            assert c["round_trips"] == item["round_trips"], c
        assert c["sessions"] == item["rounds"], c
        # Percentiles of one sample set (the schema's consistency, not a timing claim).
        assert c["value"] <= c["p90_us"] <= c["p99_us"] <= c["max_us"], c
    # Every pair the figures need, in each regime, with both spin settings, against each baseline.
    rows = {(c["regime"], c["kind"], c["impl"], c["driver"], c["server"], c["settings"]) for c in item["cases"]}
    for regime in regimes:
        for driver, server in (("Python", "Python"), ("Python", "C#"), ("C#", "Python"), ("C#", "C#")):
            for settings in ("spin default", "spin off"):
                assert (regime, "event", "sharedbridge", driver, server, settings) in rows
        assert (regime, "event", "multiprocessing", "Python", "Python", None) in rows
        assert {c["case"] for c in item["cases"] if c["regime"] == regime} >= {"floor-futex", "floor-spin"}
    assert not list(pathlib.Path("/dev/shm").glob("sbWB*"))


def test_wakeup_sessions_got_their_cpus_and_spin_setting(smoke):
    """The probes run like the sessions: pinned ones see one CPU in both languages, and spin off reaches
    both (when the library has the setting; a build without it reports null)."""
    item = smoke["results"]["benchmarks"]["wakeup"]
    seen = {(s["regime"], s["settings"]): s for s in item["seen"]}
    assert set(seen) == {(g, s) for g in _expected_regimes() for s in ("spin default", "spin off")}
    for (regime, settings), s in seen.items():
        for lang in ("Python", "C#"):
            assert "error" not in s[lang], s
            if regime in ("one-cpu", "two-cpus"):
                # Two CPUs: the probe runs as the driving side, pinned to CPU a alone.
                assert s[lang]["cpus"] == 1, s
            else:
                # .NET's count also honours a cgroup CPU quota; Python's is the affinity alone.
                assert s[lang]["cpus"] == len(os.sched_getaffinity(0)) if lang == "Python" else s[lang]["cpus"] >= 1, s
            if settings == "spin off":
                assert s[lang]["spin_budget_us"] in (0, None), s
        # Where a forked Python server pins itself (pin_server, run first in every serving side's
        # process): CPU b in two-cpus, the driving side's CPUs elsewhere.
        py = s["Python"]
        cpus = {g["regime"]: g["cpus"] for g in item["regimes"]}[regime]
        if regime == "two-cpus":
            assert py["driver_affinity"] == cpus[:1] and py["server_affinity"] == cpus[1:], s
        else:
            assert py["server_affinity"] == py["driver_affinity"], s
            assert py["driver_affinity"] == (cpus or sorted(os.sched_getaffinity(0))), s


def test_wakeup_page_shows_every_regime_the_ratios_and_the_targets(smoke):
    text = smoke["doc"].read_text()
    section = text[text.index("## 7. Wake-up"):].split("\n## ", 1)[0]
    assert "x multiprocessing (same kind)" in section and "x C futex floor" in section
    regimes = _expected_regimes()
    heads = [line for line in section.splitlines() if line.startswith("### ")]
    assert [h.split(":")[0] for h in heads] == ["### Targets (ratios in this run; reported, never asserted)"] + [
        {"one-cpu": "### One CPU", "two-cpus": "### Two CPUs", "free": "### Free"}[r] for r in regimes]
    if len(regimes) == 1:
        assert "the two-cpus and free regimes are the same as the pinned one" in section
    else:
        a, b = smoke["results"]["benchmarks"]["wakeup"]["regimes"][1]["cpus"]
        assert f"### Two CPUs: the driving side on CPU {a}, the serving side on CPU {b}" in heads
    # Each regime's table has both spin rows of the Event Python <-> Python with figures and ratios.
    parts = section.split("\n### ")[2:]
    for part in parts:
        for settings in ("spin default", "spin off"):
            row = next(line for line in part.splitlines()
                       if line.startswith(f"| sharedbridge Event, Python <-> Python, {settings} |"))
            # label, median, p99, p99 / median, met?, x multiprocessing, x futex floor, x spin floor, n
            cells = [c.strip() for c in row.strip("|").split("|")]
            numeric = cells[1:4] + ([cells[5], cells[6]] if shutil.which("cc") else [cells[5]]) + [cells[8]]
            assert all(re.fullmatch(r"[0-9.,]+", c) for c in numeric), row
            assert cells[4] in ("yes", "**no**"), row
    # The targets: ratio / target / met? rows for every target the issue states, a verdict on each.
    targets = section[section.index("### Targets"):section.index(heads[1])]
    lines = [line for line in targets.splitlines() if line.startswith("| ") and not line.startswith("| target")]
    whats = {line.split("|")[1].strip() for line in lines}
    assert whats == {"median / multiprocessing.Event's, spin default",
                     "median / C spin floor, spin default (two-cpus and free regimes only)",
                     "median / C futex floor, spin off",
                     "p99 / median, every sharedbridge row (the worst shown)"}
    for line in lines:
        met = line.strip("|").split("|")[-1].strip()
        assert met == "yes" or met.startswith("**no**") or met.startswith("n/a"), line
    assert any("C# <-> C#, spin off" in line and "<= 1.5" in line for line in lines)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    spin_floor = {row[1] for row in cells if row[0].startswith("median / C spin floor")}
    assert spin_floor == ({"Two CPUs", "Free"} if len(regimes) == 3 else {"Two CPUs"}), spin_floor


def test_queue_has_every_case_with_its_unit_and_left_no_segment(smoke):
    item = smoke["results"]["benchmarks"]["queue"]
    assert item["unit"] == "per case" and item["rounds"] >= 1 and item["config"]
    cases = item["cases"]
    assert [c["case"] for c in cases] == list(queue_bench.CASES)
    for c in cases:
        assert "error" not in c, c
        assert c["leftover_segments"] == 0, c
        assert (c["unit"], c["higher_is_better"]) == queue_bench.GROUPS[c["group"]], c
        assert c["label"] and c["api"] and c["impl"] and isinstance(c["baseline"], bool), c
        sides = (c["driver"], c["server"]) if c["group"] == "pingpong" else (c["producer"], c["consumer"])
        assert set(sides) <= {"Python", "C#", "C"}, c
        if c.get("skipped"):
            continue
        assert c["samples"] >= 1 and math.isfinite(c["p99"]) and c["p99"] > 0 and c["mean"] > 0, c
        if c["group"] in ("messages", "array1m"):
            assert c["messages"] > 0, c
    # Every direction the targets name, against its baselines in the same run.
    groups = {(c["group"], c["impl"], sides) for c in cases
              for sides in [(c.get("producer") or c["driver"], c.get("consumer") or c["server"])]}
    for pair in (("Python", "Python"), ("C#", "C#"), ("C#", "Python"), ("Python", "C#")):
        assert ("messages", "sharedbridge", pair) in groups and ("pingpong", "sharedbridge", pair) in groups
    for group in ("messages", "pingpong", "array1m"):
        assert (group, "multiprocessing", ("Python", "Python")) in groups
    assert ("messages", "C floor", ("C", "C")) in groups and ("array64m", "numpy", ("Python", "Python")) in groups
    assert not list(pathlib.Path("/dev/shm").glob(queue_bench.PREFIX + "*"))


def test_queue_page_shows_every_target(smoke):
    text = smoke["doc"].read_text()
    section = text[text.index("## 8. Queues"):]
    targets = section[section.index("### Targets"):section.index("### 64-byte messages")]
    lines = [line for line in targets.splitlines() if line.startswith("| ") and not line.startswith("| target")]
    assert len(lines) == len(queue_bench_targets())
    for line in lines:
        met = line.strip("|").split("|")[-1].strip()
        assert met in ("yes", "**no**") or met.startswith("n/a"), line


def queue_bench_targets():
    import render  # bench/render.py
    return render.QUEUE_TARGETS


def test_rendered_page_references_existing_plots(smoke):
    doc = smoke["doc"]
    text = doc.read_text()
    assert smoke["results"]["machine"]["cpu_model"] in text and "SMOKE" in text
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    expected = len(ITEMS) - (1 if smoke["results"]["benchmarks"]["pythonnet_handoff"].get("skipped") else 0)
    assert len(images) == expected
    for rel in images:
        assert (doc.parent / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", rel
    assert json.loads((doc.parent / "benchmarks/results.json").read_text()) == smoke["results"]


def test_smoke_leaves_the_checked_in_results_alone(smoke):
    assert _digest(CHECKED_IN) == smoke["before"]


def test_tensor_has_every_case_against_its_baselines_and_left_no_segment(smoke):
    item = smoke["results"]["benchmarks"]["tensor"]
    assert item["unit"] == "per case" and item["rounds"] >= 1 and item["config"]
    cases = item["cases"]
    seen = {c["case"] for c in cases}
    assert seen == set(tensor_bench.CASES)
    for c in cases:
        assert c["unit"] == tensor_bench.GROUPS[c["group"]] and isinstance(c["baseline"], bool), c
        assert c["label"] and c["bytes"] > 0, c
    # attach: ours and the bare mmap at every size of the run, in the same run
    sizes = item["config"]["attach_sizes"]
    for key in ("attach-sb", "attach-bare"):
        assert sorted(c["bytes"] for c in cases if c["case"] == key) == sorted(sizes)
    assert not list(pathlib.Path("/dev/shm").glob(tensor_bench.PREFIX + "*"))
    text = smoke["doc"].read_text()
    assert "## 9. N-dimensional shared arrays" in text and "Targets (ratios within this run)" in text
