#!/usr/bin/env python3
"""Render results.json (bench/run.py) as a Markdown page with PNG plots.

Usage: python3 bench/render.py RESULTS.json DOC.md [--copy-json]
The plots go to <DOC without .md>/ (docs/benchmarks.md -> docs/benchmarks/*.png); with
--copy-json results.json is copied there too. matplotlib: Debian's python3-matplotlib.
"""
import json
import pathlib
import shutil
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def human_bytes(n):
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} B"


def fmt(v):
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bars(ax, groups, series, value, ylabel):
    """Grouped bar chart: groups on the x axis, one bar per series in each group."""
    width = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [value(g, s) or 0 for g in groups], width, label=s)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def lines(ax, rows, key, ylabel):
    """One line per key(row) of value against bytes, log x."""
    for label in dict.fromkeys(key(r) for r in rows):
        pts = sorted((r["bytes"], r["value"]) for r in rows if key(r) == label)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def save(fig, plots, name):
    fig.tight_layout()
    fig.savefig(plots / name, dpi=90)
    plt.close(fig)
    return f"![{name}]({plots.name}/{name})"


def lock_increment(b, plots):
    interps = list(dict.fromkeys(c["interpreter"] for c in b["cases"]))
    series = list(dict.fromkeys(f"{c['impl']} ({c['backend']})" for c in b["cases"]))
    fig, axes = plt.subplots(1, len(interps), figsize=(4.8 * len(interps), 3.6), squeeze=False, sharey=True)
    for ax, it in zip(axes[0], interps):
        def value(case, s, it=it):
            return next((c["value"] for c in b["cases"] if c["interpreter"] == it and c["case"] == case
                         and f"{c['impl']} ({c['backend']})" == s), None)
        bars(ax, list(dict.fromkeys(c["case"] for c in b["cases"])), series, value,
             "ns/op" if ax is axes[0][0] else "")
        ax.set_title(f"CPython {it}")
    axes[0][-1].legend(fontsize=7)
    img = save(fig, plots, "lock_increment.png")
    rows = [(c["interpreter"], c["case"], c["impl"], c["backend"], fmt(c["value"]),
             f"{c['ratio_to_multiprocessing']:.2f}") for c in b["cases"]]
    return img + "\n\n" + table(["CPython", "case", "impl", "lock path", "ns/op", "x multiprocessing"], rows)


def contended(b, plots):
    variants = list(dict.fromkeys(c["variant"] for c in b["cases"]))
    procs = sorted({c["processes"] for c in b["cases"]})
    fig, ax = plt.subplots(figsize=(8, 3.8))

    def value(p, v):
        return next((c["value"] for c in b["cases"] if c["processes"] == int(p) and c["variant"] == v), None)
    bars(ax, [str(p) for p in procs], variants, value, "M increments/s (all processes)")
    ax.set_xlabel("processes")
    ax.legend(fontsize=7)
    img = save(fig, plots, "contended.png")
    base = {c["processes"]: c["value"] for c in b["cases"] if c["variant"].startswith("multiprocessing")}
    rows = [(c["variant"], c["processes"], fmt(c["value"]),
             f"{c['value'] / base[c['processes']]:.2f}" if c["processes"] in base else "")
            for c in b["cases"]]
    return img + "\n\n" + table(["variant", "processes", "M increments/s", "x multiprocessing"], rows)


def by_size(b, plots, name, key, group, cols):
    groups = list(dict.fromkeys(group(c) for c in b["cases"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.8), squeeze=False)
    for ax, g in zip(axes[0], groups):
        lines(ax, [c for c in b["cases"] if group(c) == g], key, b["unit"])
        ax.set_title(g, fontsize=9)
        ax.legend(fontsize=7)
    img = save(fig, plots, name)
    sizes = sorted({c["bytes"] for c in b["cases"]})
    labels = list(dict.fromkeys(f"{group(c)}: {key(c)}" for c in b["cases"]))
    vals = {(f"{group(c)}: {key(c)}", c["bytes"]): c["value"] for c in b["cases"]}
    rows = [[lab] + [fmt(vals[(lab, s)]) if (lab, s) in vals else "" for s in sizes] for lab in labels]
    return img + "\n\n" + table([cols] + [human_bytes(s) for s in sizes], rows)


def simple(b, plots, name, key, group=None):
    rows = b["cases"]
    if group:
        groups = list(dict.fromkeys(str(group(c)) for c in rows))
        series = list(dict.fromkeys(key(c) for c in rows))
        fig, ax = plt.subplots(figsize=(8, 3.6))
        bars(ax, groups, series, lambda g, s: next((c["value"] for c in rows if str(group(c)) == g
                                                    and key(c) == s), None), b["unit"])
        ax.legend(fontsize=7)
    else:
        fig, ax = plt.subplots(figsize=(8, 3.2))
        ax.barh([key(c) for c in rows], [c["value"] for c in rows])
        ax.set_xlabel(b["unit"])
        ax.invert_yaxis()
    img = save(fig, plots, name)
    return img


WAKE_BASELINE = {"event": "mp-event", "semaphore": "mp-semaphore", "condition": "mp-condition"}
WAKE_REGIME_TITLE = {"one-cpu": "One CPU", "two-cpus": "Two CPUs", "free": "Free"}
# The regimes where the spin floor means something: the two sides on two CPUs (always, or as placed).
WAKE_SPIN_FLOOR_REGIMES = ("two-cpus", "free")
SPIN_FLOOR_TARGET = "median / C spin floor, spin default (two-cpus and free regimes only)"
# The Event rows: Python <-> Python and C# <-> Python (either side driving).
WAKE_EVENT_ROWS = ("sb-event-py-py", "sb-event-py-cs", "sb-event-cs-py")


def _regime(c):
    return c.get("regime", "free")        # a run of the harness before the regimes: nothing was pinned


def wakeup_targets(b):
    """The issue's targets as rows (target, regime, row, ratio, target, met?), ratios within one regime."""
    rows = b["cases"]
    by = {(_regime(c), c["case"]): c for c in rows}
    regimes = list(dict.fromkeys(_regime(c) for c in rows))
    out = []

    def one(what, regime, key, base, limit):
        c, ref = by.get((regime, key)), by.get((regime, base))
        if c is None:
            return
        if not (c["value"] and ref and ref["value"]):
            if not c["value"]:
                why = f"{c.get('skipped') or 'failed'}"
            elif ref is None:
                why = f"{base} not run"
            else:
                why = f"{ref['label']}: {ref.get('skipped') or 'failed'}"
            out.append((what, regime, c["label"], "n/a", f"<= {limit:g}", f"n/a ({why[:120]})"))
            return
        ratio = c["value"] / ref["value"]
        out.append((what, regime, c["label"], f"{ratio:.2f}", f"<= {limit:g}", "yes" if ratio <= limit else "**no**"))

    for regime in regimes:
        for key in WAKE_EVENT_ROWS:
            one("median / multiprocessing.Event's, spin default", regime, key, "mp-event", 0.5)
    for regime in WAKE_SPIN_FLOOR_REGIMES:
        if regime in regimes:
            for key in WAKE_EVENT_ROWS:
                one(SPIN_FLOOR_TARGET, regime, key, "floor-spin", 10)
    if not any(r in regimes for r in WAKE_SPIN_FLOOR_REGIMES) and by:
        out.append((SPIN_FLOOR_TARGET, "two-cpus", "-", "n/a", "<= 10",
                    "n/a: " + (b.get("single_cpu") or "neither the two-cpus nor the free regime was run")))
    for regime in regimes:
        for key in WAKE_EVENT_ROWS:
            one("median / C futex floor, spin off", regime, key + "@spin-off", "floor-futex", 2)
    for regime in regimes:
        one("median / C futex floor, spin off", regime, "sb-event-cs-cs@spin-off", "floor-futex", 1.5)
    for regime in regimes:
        ours = [c for c in rows if _regime(c) == regime and c["impl"] == "sharedbridge"]
        done = [c for c in ours if c["value"]]
        if not done:
            continue
        worst = max(done, key=lambda c: c["p99_us"] / c["value"])
        over = [c for c in done if c["p99_us"] / c["value"] > 3]
        met = "yes" if not over else f"**no**: {len(over)} of {len(done)} rows over"
        if len(done) < len(ours):
            met += f" ({len(ours) - len(done)} rows without figures)"
        out.append(("p99 / median, every sharedbridge row (the worst shown)", regime, worst["label"],
                    f"{worst['p99_us'] / worst['value']:.1f}", "<= 3", met))
    return out


def wakeup(b, plots):
    """Per regime: medians (bars) and p99 (marks) on a log scale, and the ratios the targets are stated
    in, each within its regime: to multiprocessing's object of the same kind, to the C futex floor and
    to the C spin floor (two-cpus and free regimes only); then the targets themselves (never asserted)."""
    rows = b["cases"]
    regimes = list(dict.fromkeys(_regime(c) for c in rows))
    keys = list(dict.fromkeys(c["case"] for c in rows))
    by = {(_regime(c), c["case"]): c for c in rows}
    labels = {c["case"]: c["label"] for c in rows}
    fig, axes = plt.subplots(1, len(regimes), figsize=(6 + 4.5 * len(regimes), 0.26 * len(keys) + 1.4),
                             squeeze=False, sharey=True, sharex=True)
    for ax, regime in zip(axes[0], regimes):
        got = [(y, by[(regime, k)]) for y, k in enumerate(keys) if (regime, k) in by and by[(regime, k)]["value"]]
        ax.barh([y for y, _ in got], [c["value"] for _, c in got],
                color=["#999999" if c["baseline"] else ("#7aa6d6" if c["settings"] == "spin off" else "#3a75b0")
                       for _, c in got], label="median (grey: baselines; light: spin off)")
        ax.plot([c["p99_us"] for _, c in got], [y for y, _ in got], "k|", markersize=8, label="p99")
        ax.set_xscale("log")
        ax.set_xlabel("us per round trip (log)")
        ax.set_title(WAKE_REGIME_TITLE.get(regime, regime), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(keys)))
    axes[0][0].set_yticklabels([labels[k] for k in keys], fontsize=6)
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(fontsize=6)
    img = save(fig, plots, "wakeup.png")

    out = [img, ""]
    regs = {g["regime"]: g for g in b.get("regimes", [])}
    out.append("Regimes (every case runs in each; a ratio is taken only within one):")
    out += [f"- **{WAKE_REGIME_TITLE.get(r, r)}**: {regs[r]['label'] if r in regs else 'not recorded'}."
            for r in regimes]
    if b.get("single_cpu"):
        out.append(f"- **Two CPUs** and **Free**: not run, {b['single_cpu']}.")
    if b.get("seen"):
        def side(s):
            if "error" in s:
                return "probe failed: " + s["error"][:120].replace("|", "/").replace("\n", " ")
            budget = ("no spin setting in this build" if s["spin_budget_us"] is None
                      else f"spin budget {s['spin_budget_us']:g} us")
            pinned = (f" (driving side on CPUs {s['driver_affinity']}, a forked server on {s['server_affinity']})"
                      if s.get("server_affinity") and s["server_affinity"] != s.get("driver_affinity") else "")
            return f"{budget}, {s['cpus']} CPU(s){pinned}"
        out += ["", "What each language saw in a session (a probe per regime and setting: "
                    "`sharedbridge.get_spin_budget()`, `SharedBridgeSettings.SpinBudget`, the CPUs it may use):", "",
                table(["regime", "settings", "Python", "C#"],
                      [(WAKE_REGIME_TITLE.get(s["regime"], s["regime"]), s["settings"], side(s["Python"]),
                        side(s["C#"]))
                       for s in b["seen"]])]
    out += ["", "### Targets (ratios in this run; reported, never asserted)", "",
            table(["target", "regime", "row", "ratio", "target", "met?"],
                  [(t, WAKE_REGIME_TITLE.get(r, r), *rest) for t, r, *rest in wakeup_targets(b)])]

    for regime in regimes:
        med = {k: by[(regime, k)]["value"] for k in keys if (regime, k) in by and by[(regime, k)]["value"]}

        def ratio(c, base, med=med):
            # The floors are not measured against each other, nor a baseline against another kind of one.
            wanted = not c["case"].startswith("floor-") and (c["impl"] == "sharedbridge" or base.startswith("floor-"))
            return f"{c['value'] / med[base]:.2f}" if wanted and c["value"] and med.get(base) else ""
        spin_floor = regime in WAKE_SPIN_FLOOR_REGIMES
        table_rows, capped = [], []
        for k in keys:
            c = by.get((regime, k))
            if c is None:
                continue
            if not c["value"]:
                why = c.get("skipped") or "failed: " + c.get("error", "?")
                table_rows.append((c["label"], why[:200].replace("|", "/").replace("\n", " "), "", "", "", "", "", "",
                                   ""))
                continue
            n = str(c["round_trips"])
            tail = c["p99_us"] / c["value"]
            tail_met = ("yes" if tail <= 3 else "**no**") if c["impl"] == "sharedbridge" else ""
            if c.get("capped"):
                capped.append(f"{c['label']}: {c['capped']}.")
                n += " (capped)"
            table_rows.append((c["label"], fmt(c["value"]), fmt(c["p99_us"]), f"{tail:.1f}", tail_met,
                               ratio(c, WAKE_BASELINE.get(c["kind"], "")), ratio(c, "floor-futex"),
                               ratio(c, "floor-spin") if spin_floor else "", n))
        title = WAKE_REGIME_TITLE.get(regime, regime) + (f": {regs[regime]['label']}" if regime in regs else "")
        out += ["", f"### {title}", ""]
        if not spin_floor:
            out += ["No ratios to the spin floor here: a spinner on the only CPU waits for the scheduler to "
                    "preempt it, so that row measures the time slice, not a wake-up.", ""]
        out.append(table(["round trip", "median us", "p99 us", "p99 / median", "met? (target <= 3)",
                          "x multiprocessing (same kind)",
                          "x C futex floor", "x C spin floor", "round trips"], table_rows))
        if capped:
            out += [""] + capped
    leftover = sum(c.get("leftover_segments", 0) for c in rows)
    if leftover:
        out += ["", f"Segments left in /dev/shm by the sessions (removed): {leftover}."]
    return "\n".join(out)


# The queue targets: (what, case, baseline case or None for an absolute figure, ">=" | "<=", limit).
QUEUE_TARGETS = [
    ("64-byte messages/s, Python -> Python / multiprocessing.Queue's", "sb-py-py", "mp-queue", ">=", 10),
    ("64-byte messages/s, Python -> Python / multiprocessing.Queue's", "sb-py-py-many", "mp-queue", ">=", 10),
    ("64-byte messages/s, C# -> C#", "sb-cs-cs", None, ">=", 5e6),
    ("64-byte messages/s, C# -> C#", "sb-cs-cs-batch", None, ">=", 5e6),
    ("64-byte messages/s, C# -> Python", "sb-cs-py", None, ">=", 1e6),
    ("64-byte messages/s, C# -> Python", "sb-cs-py-many", None, ">=", 1e6),
    ("64-byte messages/s, Python -> C#", "sb-py-cs", None, ">=", 1e6),
    ("64-byte messages/s, Python -> C#", "sb-py-cs-many", None, ">=", 1e6),
    ("ping-pong median / multiprocessing.Queue's", "pp-sb-py-py", "pp-mp-queue", "<=", 0.5),
    ("ping-pong median / multiprocessing.Queue's", "pp-sb-cs-cs", "pp-mp-queue", "<=", 0.5),
    ("ping-pong median / multiprocessing.Queue's", "pp-sb-cs-py", "pp-mp-queue", "<=", 0.5),
    ("ping-pong median / multiprocessing.Queue's", "pp-sb-py-cs", "pp-mp-queue", "<=", 0.5),
    ("1 MiB arrays GB/s / multiprocessing.Queue's", "a1-sb", "a1-mp-queue", ">=", 20),
    ("1 MiB arrays GB/s / multiprocessing.Queue's", "a1-sb-inline", "a1-mp-queue", ">=", 20),
    ("64 MiB array put + get / one numpy copy", "a64-sb", "a64-memcpy", "<=", 2),
    ("64 MiB array put + get / one numpy copy", "a64-sb-first", "a64-memcpy", "<=", 2),
]
QUEUE_BASELINE = {"messages": "mp-queue", "pingpong": "pp-mp-queue", "array1m": "a1-mp-queue",
                  "array64m": "a64-memcpy"}
QUEUE_GROUP_TITLE = {"messages": "64-byte messages, one producer process -> one consumer process",
                     "pingpong": "Ping-pong round trip through two queues",
                     "array1m": "1 MiB numpy arrays, Python -> Python",
                     "array64m": "One 64 MiB numpy array: put + get in one process against one copy"}


def queue_targets(b):
    """(target, row, figure, target, met?) for every target of QUEUE_TARGETS whose row was run."""
    by = {c["case"]: c for c in b["cases"]}
    out = []
    for what, key, base, op, limit in QUEUE_TARGETS:
        c = by.get(key)
        if c is None:
            continue
        shown = f"{op} {limit:g}" if base else f"{op} {fmt(limit)} {c['unit']}"
        ref = by.get(base) if base else None
        if not c["value"] or (base and not (ref and ref["value"])):
            bad = c if not c["value"] else ref
            why = (bad.get("skipped") or "failed: " + bad.get("error", "?")) if bad else f"{base} not run"
            out.append((what, c["label"], "n/a", shown, "n/a (" + why[:120].replace("|", "/").replace("\n", " ") + ")"))
            continue
        figure = c["value"] / ref["value"] if base else c["value"]
        met = figure >= limit if op == ">=" else figure <= limit
        out.append((what, c["label"], f"{figure:.2f}" if base else fmt(figure), shown, "yes" if met else "**no**"))
    return out


def queue(b, plots):
    """Per group: medians (bars) and the slow tail, the ratio to the group's baseline (and to the C floor for
    messages), then the targets (reported, never asserted)."""
    rows = b["cases"]
    groups = list(dict.fromkeys(c["group"] for c in rows))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 0.3 * len(rows) + 1.6), squeeze=False)
    for ax, g in zip(axes[0], groups):
        got = [c for c in rows if c["group"] == g and c["value"]]
        ax.barh(range(len(got)), [c["value"] for c in got],
                color=["#999999" if c["baseline"] else "#3a75b0" for c in got])
        ax.set_yticks(range(len(got)))
        ax.set_yticklabels([c["case"] for c in got], fontsize=7)
        ax.invert_yaxis()
        if g == "messages":
            ax.set_xscale("log")
        ax.set_xlabel(got[0]["unit"] if got else "", fontsize=8)
        ax.set_title(g, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    img = save(fig, plots, "queue.png")
    by = {c["case"]: c for c in rows}
    out = [img, "", "### Targets (figures of this run; reported, never asserted)", "",
           table(["target", "row", "figure", "target", "met?"], queue_targets(b))]
    for g in groups:
        base = by.get(QUEUE_BASELINE[g])
        floor = by.get("floor-c") if g == "messages" else None
        table_rows = []
        for c in (c for c in rows if c["group"] == g):
            if not c["value"]:
                why = c.get("skipped") or "failed: " + c.get("error", "?")
                table_rows.append((c["label"], c["api"], why[:200].replace("|", "/").replace("\n", " "), "", "", "", ""))
                continue
            ratio = f"{c['value'] / base['value']:.2f}" if base and base["value"] and c is not base else ""
            x_floor = f"{c['value'] / floor['value']:.2f}" if floor and floor["value"] and c is not floor else ""
            table_rows.append((c["label"], c["api"], fmt(c["value"]), fmt(c["p99"]), ratio, x_floor, c["samples"]))
        unit = next((c["unit"] for c in rows if c["group"] == g), "")
        tail = "p99 (1st percentile of the rate)" if GROUP_HIB.get(g, True) else "p99"
        out += ["", f"### {QUEUE_GROUP_TITLE.get(g, g)} ({unit})", "",
                f"Baseline (x baseline): {base['label'] if base else 'not run'}.", "",
                table(["case", "calls", f"median {unit}", tail, "x baseline",
                       "x C floor" if g == "messages" else "", "samples"], table_rows)]
    leftover = sum(c.get("leftover_segments", 0) for c in rows)
    if leftover:
        out += ["", f"Segments left in /dev/shm by the cases (removed): {leftover}."]
    return "\n".join(out)


GROUP_HIB = {"messages": True, "pingpong": False, "array1m": True, "array64m": False}

# The n-dimensional array targets: (what, case, baseline case, limit of baseline / case or case / baseline).
TENSOR_TARGETS = [
    ("from_numpy of 64 MiB float32: multiprocessing.Array + frombuffer + copy / from_numpy", "create-sb", "create-mp",
     "speedup", 5),
    ("attach + view / bare mmap + frombuffer (each size)", "attach-sb", "attach-bare", "ratio", 2),
]


def tensor(b, plots):
    rows = b["cases"]
    groups = list(dict.fromkeys(c["group"] for c in rows))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 0.3 * len(rows) + 1.6), squeeze=False)
    for ax, g in zip(axes[0], groups):
        got = [c for c in rows if c["group"] == g and c["value"]]
        labels = [c["case"] + (f" {fmt(c['bytes'] / 2**20)} MiB" if g == "attach" else "") for c in got]
        ax.barh(range(len(got)), [c["value"] for c in got],
                color=["#999999" if c["baseline"] else "#3a75b0" for c in got])
        ax.set_yticks(range(len(got)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        if g == "dlpack":
            ax.set_xscale("log")
        ax.set_xlabel(got[0]["unit"] if got else "", fontsize=8)
        ax.set_title(g, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    out = [save(fig, plots, "tensor.png"), "", table(["case", "bytes", "median", "p99", "unit", "baseline?", "what"],
                 [(c["case"], fmt(c["bytes"]), "skipped" if c["value"] is None else fmt(c["value"]),
                   "" if c.get("p99") is None else fmt(c["p99"]), c["unit"], "yes" if c["baseline"] else "",
                   c.get("skipped") or c["label"]) for c in rows])]
    targets = []
    for what, key, base, kind, limit in TENSOR_TARGETS:
        for c in rows:
            if c["case"] != key or c["value"] is None:
                continue
            ref = next((r for r in rows if r["case"] == base and r["bytes"] == c["bytes"] and r["value"]), None)
            if ref is None:
                continue
            figure = ref["value"] / c["value"] if kind == "speedup" else c["value"] / ref["value"]
            met = figure >= limit if kind == "speedup" else figure <= limit
            targets.append((what, fmt(c["bytes"]), f"{figure:.2f}", (">= " if kind == "speedup" else "<= ") + f"{limit:g}",
                            "yes" if met else "**no**"))
    dl = {c["case"]: c for c in rows if c["group"] == "dlpack" and c["value"]}
    if "dlpack-sb" in dl and "dlpack-copy" in dl:
        targets.append(("torch.from_dlpack(shared) against torch.tensor(numpy_array), a copy", fmt(dl["dlpack-sb"]["bytes"]),
                        f"{dl['dlpack-copy']['value'] / dl['dlpack-sb']['value']:.0f}x faster", "(no target)", ""))
    if targets:
        out += ["", "Targets (ratios within this run):", "",
                table(["target", "bytes", "figure", "target", "met?"], targets)]
    return "\n".join(out)


def render(results, doc):
    doc = pathlib.Path(doc)
    plots = doc.with_suffix("")
    plots.mkdir(parents=True, exist_ok=True)
    m, B = results["machine"], results["benchmarks"]
    out = [
        "# SharedBridge benchmarks",
        "",
        f"Last full run: **{results['date']}**, commit `{results['git_commit'][:12]}`, "
        f"{results['duration_s']:.0f} s{' (SMOKE run: tiny sizes, not figures to quote)' if results['smoke'] else ''}. "
        "Regenerate with `make bench` (it writes `build/bench/results.json`, schema in `bench/run.py`, "
        "then this page); the raw figures of this page are "
        f"[{plots.name}/results.json]({plots.name}/results.json).",
        "",
        "Every benchmark runs against its baseline **in the same run**. Figures are **medians of "
        "interleaved rounds**: each round times every case once, the order rotating between rounds, so "
        "drift and other load hit every case alike. The machine was shared with other work during the "
        f"run (load average {m['load_average_start'][0]:.2f} at the start, "
        f"{m.get('load_average_end', [0])[0]:.2f} at the end, on {m['cores']} cores): absolute figures "
        "are noisier than the ratios.",
        "",
        "## Machine",
        "",
        table(["", ""], [
            ("CPU", m["cpu_model"]), ("cores", m["cores"]), ("kernel", m["kernel"]), ("glibc", m["glibc"]),
            (".NET runtime", m["dotnet_runtime"]),
            ("memory available / /dev/shm free", f"{m['mem_available_mib']} MiB / {m['shm_free_mib']} MiB"),
            ("load average (1/5/15 min) at start", " / ".join(f"{x:.2f}" for x in m["load_average_start"])),
            ("interpreters (lock path)", "<br>".join(f"CPython {i['version']} `{i['path']}` ({i['lock_backend']})"
                                                     for i in m["interpreters"])),
        ]),
    ]
    sections = [
        ("lock_increment", "1. Locked increment",
         "One process, every idiom of the seeds: `Array('q', 5)`, case `lock` `with arr.get_lock(): arr[i] += 1`, "
         "case `sync` the synchronized `arr[i] += 1`; `Value('q')`, case `value-lock` "
         "`with v.get_lock(): v.value += 1`, case `value-sync` the synchronized `v.value += 1`. SharedBridge on "
         "both lock paths: `c` (the compiled `_fastlock` extension) and `ctypes` (`SHAREDBRIDGE_NO_ACCEL=1`); "
         "baseline `multiprocessing.Array` / `.Value` (a POSIX semaphore). `bench/lock_increment.py`.",
         lambda b: lock_increment(b, plots)),
        ("contended", "2. Contended throughput on one locked counter",
         "1, 2 and 4 processes increment one shared counter under its lock for a fixed time, starting "
         "together; the figure is all processes' increments per second (the counter is checked against "
         "the sum). On 2 cores, 4 processes oversubscribe the CPU.",
         lambda b: contended(b, plots)),
        ("bulk_copy", "3. Bulk copy into and out of a segment",
         "A segment of N bytes and two private buffers of N bytes; `into segment` copies a private buffer "
         "into the segment, `out of segment` the reverse, `private to private` is the baseline. Python: "
         "`numpy.copyto` on `as_numpy` and a `memoryview` slice assignment; .NET: `Span<byte>.CopyTo` on "
         "`SharedArray<byte>.AsSpan()`. The largest size is capped by free memory and /dev/shm.",
         lambda b: by_size(b, plots, "bulk_copy.png", lambda c: c["case"],
                           lambda c: f"{c['lang']} {c['method']}", "copy (GB/s)")),
        ("attach_cost", "4. Cost of attaching to an array, by its size",
         "Another process's array (persistent segment, closed by its creator so nothing is shared "
         "in-process): Python `sharedbridge.attach(name)` + `as_numpy` + `close`; .NET "
         "`SharedArray<double>.Open(name)` + `AsSpan` + `Dispose`; baselines: the bare "
         "`os.open` + `mmap` + `numpy.frombuffer` and `MemoryMappedFile.CreateFromFile` + view of the same "
         "file. Flat is the goal: nothing is copied or touched per element.",
         lambda b: by_size(b, plots, "attach_cost.png", lambda c: c["case"], lambda c: c["lang"],
                           "attach (us/call)")),
        ("dotnet_lock", "5. .NET `Lock()` against `Monitor` and a bare pthread mutex (BenchmarkDotNet)",
         "BenchmarkDotNet {benchmarkdotnet}, job {job}, toolchain {toolchain}. The pthread mutex is of the "
         "library's kind (process-shared, robust, recursive). 2 threads: both hammer the same lock; ns/op "
         "is wall time over both threads' operations.",
         lambda b: simple(b, plots, "dotnet_lock.png", lambda c: c["case"], lambda c: f"{c['threads']} thread(s)")
         + "\n\n" + table(["case", "threads", "ns/op", "stddev"],
                          [(c["case"], c["threads"], fmt(c["value"]), fmt(c["stddev"])) for c in b["cases"]])),
        ("pingpong", "6a. Event ping-pong",
         "Round trip between two processes: one sets `ping` and waits for `pong`, the other waits, clears "
         "`ping`, sets `pong` (`python/benchmarks/bench_sync_pingpong.py`; the C# side is "
         "`SharedBridge.Benchmarks pingpong-serve`). Baselines: `multiprocessing.Event` and a "
         "`multiprocessing.Pipe` echo.",
         lambda b: simple(b, plots, "pingpong.png", lambda c: c["variant"])
         + "\n\n" + table(["variant", "median us", "p90 us", "round trips"],
                          [(c["variant"], fmt(c["value"]), fmt(c["p90_us"]), c["round_trips"]) for c in b["cases"]])),
        ("pythonnet_handoff", "6b. The pythonnet hand-off",
         "`sharedbridge.dotnet` in one process (pythonnet, CoreCLR): a .NET `SharedArray<double>` to a "
         "zero-copy numpy view (`as_numpy`), to the Python package's object (`to_python`, then closed), and a "
         "Python object back to .NET (`to_dotnet`, then disposed), against copying the same data "
         "(`numpy.copy`), which a by-value hand-off costs at least (`bench/pythonnet_handoff.py`).",
         lambda b: by_size(b, plots, "pythonnet_handoff.png", lambda c: c["case"], lambda c: "Python + pythonnet",
                           "hand-off (us/call)")),
        ("wakeup", "7. Wake-up round trips: Event, Semaphore, Condition against the floors, on one CPU, two CPUs and free",
         "A two-process ping-pong (`bench/wakeup.py`; the .NET sides are `SharedBridge.Benchmarks wake`): the "
         "driving side hands `ping` over and waits for `pong`, the serving side waits for `ping` and hands `pong` "
         "back. Event: set / wait / clear; Semaphore: release / acquire on two semaphores at 0; Condition: each "
         "side holds the lock and flips an int under it, `notify()` then `wait()` until the other side has "
         "flipped it. \"X drives, Y serves\" says which language times the round trip. Baselines in the same "
         "run: the C floors (`bench/c/wake_floor.c`, compiled by the run: bare `FUTEX_WAIT`/`FUTEX_WAKE` on a "
         "shared word, and both sides spinning on one cache line, which needs two otherwise idle CPUs to mean "
         "anything), `multiprocessing`'s Event, Semaphore, Condition and a `Pipe` echo (fork), and .NET's "
         "`SemaphoreSlim` between two threads. Every case runs in three regimes, reported apart because the "
         "placement of the two processes changes the figures by an order of magnitude "
         "(docs/wakeups-design.md section 9): **one CPU** (every process of a session pinned to the same CPU), "
         "**two CPUs** (the driving side pinned to one CPU, the serving side to another, floors and baselines "
         "too: the cross-CPU figures that repeat from run to run; each process then may use one CPU, so the "
         "libraries do not spin there) and **free** (no pinning: the scheduler sometimes puts both sides on one "
         "CPU, so these figures vary between runs). Each sharedbridge case runs with the default spin (`SHAREDBRIDGE_SPIN_US` "
         "unset) and with spinning off (`SHAREDBRIDGE_SPIN_US=0` in both processes). Median and 99th "
         "percentile over {round_trips} round trips per case and regime in {rounds} interleaved rounds (each a "
         "fresh pair of processes, {warmup_per_session} warm-up round trips unmeasured). The issue's targets "
         "are ratios within one regime of one run: Event round trip Python <-> Python and C# <-> Python, "
         "median <= 0.5x multiprocessing.Event's (spin default), <= 10x the spin floor (spin default, two CPUs and free), "
         "<= 2x the futex floor (spin off); p99 <= 3x the median in every sharedbridge row; C# <-> C# Event "
         "<= 1.5x the futex floor (spin off). Grey bars: baselines.",
         lambda b: wakeup(b, plots)),
        ("queue", "8. Queues: sharedbridge Queue and SharedQueue against multiprocessing.Queue and the C floor",
         "`bench/queue_bench.py` (the .NET sides are `SharedBridge.Benchmarks queue`, Queue.cs). 64-byte `bytes` "
         "messages from one producer process to one consumer process, Python (`put`/`get` and `put_many`/"
         "`get_many` of 64), C# (`Write`/`Read`) and across, against `multiprocessing.Queue` (fork) and the C "
         "floor (`bench/c/queue_peer.c floor`: the same queue format written in C, compiled by the run); a "
         "ping-pong round trip through two queues; 1 MiB numpy arrays (a 1 MiB ring sends them out of line, a "
         "16 MiB ring in the ring); one 64 MiB array put and got back against one numpy copy of it (and one copy into "
         "freshly mapped memory, page faults included, which is what a new out-of-line segment costs). The "
         "consumer times from the moment both sides are ready to its last message. Medians over {rounds} "
         "interleaved rounds (ping-pong: over every round trip of every round); p99 is the slow tail (for "
         "rates, the 1st percentile). The issue's targets: Python -> Python >= 10x multiprocessing.Queue's "
         "messages/s, C# -> C# >= 5 million/s, C# <-> Python >= 1 million/s each way, ping-pong <= 0.5x "
         "multiprocessing.Queue's, 1 MiB arrays >= 20x multiprocessing.Queue's GB/s, 64 MiB within 2x of one "
         "copy. Grey bars: baselines.",
         lambda b: queue(b, plots)),
        ("tensor", "9. N-dimensional shared arrays: from_numpy, attach and the DLPack hand-off",
         "`bench/tensor_bench.py`. **create**: a shared 64 MiB float32 tensor (256 x 256 x 256) from a numpy array, "
         "`sharedbridge.from_numpy` against what a multiprocessing user writes (`multiprocessing.Array('f', n)` + "
         "`numpy.frombuffer(...).reshape(...)` + a copy), with two floors: a copy into freshly mapped memory (page "
         "faults included: tmpfs has no huge pages here, so every new segment pays them) and a numpy copy (numpy's "
         "memory uses transparent huge pages). **attach**: another process's tensor attached and viewed with its "
         "shape (`sharedbridge.attach(name).numpy()` + `close`), in a fresh process, against the bare `os.open` + "
         "`mmap` + `numpy.frombuffer(...).reshape(...)` of the same object, by size (flat is the goal). **dlpack**: "
         "`torch.from_dlpack(shared)` against `torch.tensor(numpy_array)` (a copy) and `torch.from_numpy` (zero "
         "copy of private memory). Medians over {rounds} interleaved rounds, with p99. The issue's targets: "
         "from_numpy >= 5x faster than the multiprocessing idiom; attach + view within 2x of the bare mmap.",
         lambda b: tensor(b, plots)),
    ]
    for key, title, text, body in sections:
        b = B.get(key)
        if b is None:
            continue
        out += ["", f"## {title}", "", text.format(**{k: b.get(k, "") for k in ("benchmarkdotnet", "job", "toolchain", "round_trips",
                                                                   "rounds", "warmup_per_session")}),
                "", (f"Unit: {b['unit']} ({'higher' if b['higher_is_better'] else 'lower'} is better). "
                     if b["unit"] != "per case" else "Units: each table's own. ") + f"Took {b.get('seconds', 0):.0f} s.", ""]
        out.append(f"Skipped: {b['skipped']}" if b.get("skipped") else body(b))
    doc.write_text("\n".join(out) + "\n")
    return plots


def main(argv):
    results = json.loads(pathlib.Path(argv[0]).read_text())
    plots = render(results, argv[1])
    if "--copy-json" in argv:
        shutil.copy(argv[0], plots / "results.json")
    print(f"render: wrote {argv[1]} and {plots}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
