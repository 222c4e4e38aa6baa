#!/usr/bin/env bash
# Run the Python suite (python/tests) once per CPython minor version >= 3.10 on this machine:
# Debian's /usr/bin/python3 preferred for its minor version (it has numpy and pythonnet's cffi, so fewer tests skip), then
# the pyenv interpreters and build/venv/bin/python. A second interpreter of a minor version
# already tested (pyenv's 3.11.x next to Debian's 3.11) is skipped and said so: the package is
# pure Python plus ctypes and the optional extension, whose behaviour is fixed per minor version;
# SB_ALL_INTERPRETERS=1 tests every one anyway.
# Two interpreters run at once (SB_PYTHON_LANES, default 2 on a machine with 2 CPUs or more);
# each one's output is printed whole when it ends.
# Usage: scripts/test-python.sh RESULTS_DIR
# Writes RESULTS_DIR/python-<label>.junit.xml and RESULTS_DIR/python-<label>.status per
# interpreter (and pythonnet-<label>.* for python/tests_dotnet); exits non-zero if any run failed. The package is used from the source
# tree (PYTHONPATH=python), not installed.
# The optional compiled lock fast path (python/sharedbridge/_platform/_fastlock.c) is built
# in place for each interpreter first (scripts/build_fastlock.py); where it is built the
# suite must use it (SHAREDBRIDGE_EXPECT_ACCEL=1, python/tests/test_lock_backend.py), and on
# Debian's python3 and the newest interpreter the lock tests run again on the ctypes path
# (SHAREDBRIDGE_NO_ACCEL=1): python-<label>-ctypes.*.
# A hung test fails alone after its per-test limit (pyproject.toml test_timeout, conftest.py at
# the repository root: its name and every thread's stacks are printed) and the run goes on.
# If a whole run still exceeds 600 s, `timeout -s ABRT` ends it and its processes: pytest's
# faulthandler prints every thread's stack, and RESULTS_DIR/<suite>.progress names the test
# that was running (scripts/summarize.py reports it as failed).
set -uo pipefail
ulimit -c 0        # the SIGABRT of a timed-out run leaves no core files
cd "$(dirname "$0")/.."
RESULTS="${1:?usage: scripts/test-python.sh RESULTS_DIR}"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
. scripts/python-env.sh

# The lock, synchronized-object, waiting-object and queue tests, run a second time on the
# ctypes path.
CTYPES_TESTS="test_locks.py test_lock_hardening.py test_lock_backend.py test_dropin.py test_processes.py test_api.py"
# ... and the queue tests: the queue ring's put/get are compiled too (queue_fast.py).
CTYPES_TESTS="$CTYPES_TESTS test_queue_basic.py test_queue_hostile.py test_queue_processes.py test_queue_fast.py"
# ... and the waiting objects' tests (their spin and futex calls are compiled too): on Debian's
# interpreter only, where the other ctypes tests run as well.
CTYPES_SYNC_TESTS="test_sync.py test_sync_recovery.py test_wakeups.py test_wakeups_v4.py test_wait_core.py test_sync_rules.py"
# The rules run again on the directory backend (docs/format.md section 1.3).
DIR_TESTS="test_header.py test_opening.py test_permissions.py test_locks.py"
newest="$(python_interpreters | while read -r p; do "$p" -c 'import sys; print("%d.%03d %s" % (sys.version_info[0], sys.version_info[1], sys.executable))'; done | sort | tail -n1 | cut -d' ' -f2-)"

# One interpreter's suites (its label, its interpreter, its pytest path): the package suite, the
# ctypes rerun where it applies, and the pythonnet suite. Writes the .status files; its output
# goes to RESULTS/<label>.log, printed whole when it ends (two lanes run at once, below).
run_interpreter() {
    local label="$1" py="$2" extra="$3" rc expect=""
    "$py" scripts/build_fastlock.py
    rc=$?
    case "$rc" in
        0) expect=1 ;;
        3) ;;                                   # no compiler or headers: ctypes only, said above
        *) echo 1 > "$RESULTS/fastlock-$label.status" ;;
    esac
    SHAREDBRIDGE_EXPECT_ACCEL="$expect" PYTHONPATH="$PWD/python${extra:+:$extra}" \
        timeout -s ABRT -k 30 600 "$py" -m pytest python/tests -q -p no:cacheprovider -p no:hypothesispytest \
        -o junit_suite_name="python-$label" --junitxml="$RESULTS/python-$label.junit.xml"
    echo "$?" > "$RESULTS/python-$label.status"
    if [ -n "$expect" ] && { [ "$py" = /usr/bin/python3 ] || [ "$py" = "$newest" ]; }; then
        echo "=== python-$label-ctypes ($py, SHAREDBRIDGE_NO_ACCEL=1: the lock tests on the ctypes path)"
        SHAREDBRIDGE_NO_ACCEL=1 PYTHONPATH="$PWD/python${extra:+:$extra}" \
            timeout -s ABRT -k 30 600 "$py" -m pytest $(printf 'python/tests/%s ' $CTYPES_TESTS \
                $([ "$py" = /usr/bin/python3 ] && echo $CTYPES_SYNC_TESTS)) -q -p no:cacheprovider \
            -p no:hypothesispytest -o junit_suite_name="python-$label-ctypes" \
            --junitxml="$RESULTS/python-$label-ctypes.junit.xml"
        echo "$?" > "$RESULTS/python-$label-ctypes.status"
    fi
    # The header, attach and lock rules once more on the directory backend (docs/format.md
    # section 1.3): SHAREDBRIDGE_DIR names a fresh tmpfs directory; Debian's interpreter only.
    # (The object that changes size under its attacher is left to the main run: 2 s, and the
    # same code after open.)
    if [ "$py" = /usr/bin/python3 ]; then
        echo "=== python-$label-dir ($py, SHAREDBRIDGE_DIR: the rules on the directory backend)"
        local dir
        dir="$(mktemp -d /dev/shm/sbdir.XXXXXX)"
        SHAREDBRIDGE_DIR="$dir" PYTHONPATH="$PWD/python${extra:+:$extra}" PYTHONDONTWRITEBYTECODE=1 \
            timeout -s ABRT -k 30 600 "$py" -m pytest $(printf 'python/tests/%s ' $DIR_TESTS) \
            -k "not changing_size" -q -p no:cacheprovider -p no:hypothesispytest \
            -o junit_suite_name="python-$label-dir" --junitxml="$RESULTS/python-$label-dir.junit.xml"
        echo "$?" > "$RESULTS/python-$label-dir.status"
        rm -rf "$dir"
    fi
    # sharedbridge.dotnet with pythonnet, in its own process (the .NET runtime stays loaded):
    # pythonnet from the interpreter, else ../shared/vendor/pythonnet or
    # SHAREDBRIDGE_PYTHONNET_PATH (python/tests_dotnet/conftest.py); skipped with the reason
    # where it is nowhere.
    echo "=== pythonnet-$label ($py)"
    PYTHONPATH="$PWD/python${extra:+:$extra}" \
        timeout -s ABRT -k 30 600 "$py" -m pytest python/tests_dotnet -q -rs -p no:cacheprovider -p no:hypothesispytest \
        -o junit_suite_name="pythonnet-$label" --junitxml="$RESULTS/pythonnet-$label.junit.xml"
    echo "$?" > "$RESULTS/pythonnet-$label.status"
}

# Which interpreters to test: one per CPython minor version, Debian's python3 first.
found=0
declare -A seen=()
declare -A minors_tested=()
runs=()
while read -r py; do
    [ -n "$py" ] || continue
    version="$("$py" -c 'import platform; print(platform.python_version())')"
    label="$version"
    if [ -n "${seen[$label]:-}" ]; then      # same version twice (e.g. a venv): tell them apart
        case "$py" in
            /usr/bin/*) label="$version-system" ;;
            */build/venv/*) label="$version-venv" ;;
        esac
    fi
    [ -z "${seen[$label]:-}" ] || continue
    seen[$label]=1
    if ! extra="$(pytest_path_for "$py")"; then
        # No pytest for this interpreter and no Debian pytest to lend it (a machine where
        # scripts/ensure-deps.sh made build/venv instead): say so and test on the others.
        echo "=== python-$label ($py): not tested, it has no pytest (build/venv or Debian's python3-pytest is used instead)"
        continue
    fi
    minor="${version%.*}"                      # 3.11.2 -> 3.11
    if [ -n "${minors_tested[$minor]:-}" ] && [ "${SB_ALL_INTERPRETERS:-0}" != 1 ]; then
        echo "=== python-$label ($py): not tested, Python $minor was tested with ${minors_tested[$minor]} (SB_ALL_INTERPRETERS=1 tests it too)"
        continue
    fi
    minors_tested[$minor]="$py"
    found=1
    runs+=("$label|$py|$extra")
done < <(python_interpreters | grep -Fx /usr/bin/python3; python_interpreters | grep -Fvx /usr/bin/python3)

# The longest runs first, so that the two lanes end together: the newest interpreter's and
# Debian's (each also reruns tests on the ctypes path), then the others, newest first.
mapfile -t runs < <(for run in "${runs[@]}"; do
    IFS='|' read -r label py extra <<< "$run"
    if [ "$py" = "$newest" ]; then rank=0; elif [ "$py" = /usr/bin/python3 ]; then rank=1; else rank=2; fi
    printf '%s\t%s\t%s\n' "$rank" "$label" "$run"
done | sort -t$'\t' -k1,1n -k2,2Vr | cut -f3-)

# Two interpreters at a time (SB_PYTHON_LANES, default 2 with at least 2 CPUs): a suite spends
# most of its time starting and waiting for processes, so two of them share two CPUs well. The
# suites already coexist with other programs' segments (conftest.py tells theirs apart by the
# creator pid), so they coexist with each other.
lanes="${SB_PYTHON_LANES:-$([ "$(nproc)" -ge 2 ] && echo 2 || echo 1)}"
running=0
for run in "${runs[@]}"; do
    IFS='|' read -r label py extra <<< "$run"
    if [ "$running" -ge "$lanes" ]; then
        wait -n
        running=$((running - 1))
    fi
    echo "=== python-$label ($py): started (output in $RESULTS/python-$label.log, printed when it ends)"
    ( run_interpreter "$label" "$py" "$extra" > "$RESULTS/python-$label.log" 2>&1
      echo "=== python-$label ($py): finished"; cat "$RESULTS/python-$label.log" ) &
    running=$((running + 1))
done
wait

status=0
for f in "$RESULTS"/python-*.status "$RESULTS"/pythonnet-*.status "$RESULTS"/fastlock-*.status; do
    [ -e "$f" ] || continue
    [ "$(cat "$f")" = 0 ] || status=1
done

if [ "$found" = 0 ]; then
    echo "no CPython >= 3.10 with pytest found (run scripts/ensure-deps.sh)" >&2
    echo 1 > "$RESULTS/python.status"
    exit 1
fi
exit $status
