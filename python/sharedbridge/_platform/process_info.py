"""What /proc says about processes: when one started, and who maps a segment now."""

import os

_start_time_cache = {}


def process_start_time(pid=None):
    """Field 22 of /proc/<pid>/stat (clock ticks after boot), or 0 if unknown."""
    pid = os.getpid() if pid is None else pid
    if pid not in _start_time_cache:
        ticks = _read_start_time(pid)
        if not ticks:
            return 0
        _start_time_cache[pid] = ticks
    return _start_time_cache[pid]


def _read_start_time(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def process_is_running(pid, start_time):
    """True when a process with *pid* exists and (when *start_time* is non-zero) has that
    start time, so a reused pid does not count (docs/format.md section 8). Read fresh
    from /proc every time (never cached: the pid may have been reused since)."""
    if pid <= 0 or not os.path.isdir(f"/proc/{pid}"):
        return False
    return start_time == 0 or _read_start_time(pid) == start_time


def processes_mapping(inode):
    """Pids of the processes whose /proc/<pid>/maps show a /dev/shm object with this
    inode mapped (where readable: other users' maps are skipped)."""
    return processes_mapping_any({inode}).get(inode, [])


def processes_mapping_any(inodes):
    """{inode: sorted pids} for the /dev/shm objects of *inodes* that some process maps,
    in one pass over /proc (where readable)."""
    wanted = {str(i).encode(): i for i in inodes}
    found = {}
    if not wanted:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/maps", "rb") as f:
                data = f.read()
        except OSError:
            continue
        seen = set()
        for line in data.split(b"\n"):
            parts = line.split(None, 5)
            if (len(parts) == 6 and parts[4] in wanted and parts[4] not in seen
                    and parts[5].startswith(b"/dev/shm/")):
                seen.add(parts[4])
                found.setdefault(wanted[parts[4]], []).append(int(entry))
    for pids in found.values():
        pids.sort()
    return found


def process_of_thread(tid):
    """The pid (thread group) of thread *tid*, or 0 if there is no such thread."""
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
