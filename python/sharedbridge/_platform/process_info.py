"""What /proc says about processes: when one started, whether it still runs, and who
maps a segment now."""

import os

# (pid, start time) of this process, as read in this process. A fork child gets its
# own: the value is dropped after fork (and re-read whenever the pid differs), never
# inherited, so a descendant that gets an ancestor's recycled pid records its own start
# time (docs/format.md section 8: start times are never taken over from another process).
_own = (0, 0)


def process_start_time(pid=None):
    """Field 22 of /proc/<pid>/stat (clock ticks after boot), or 0 if unknown. Another
    process's start time is read fresh every time (pids are reused); this process's own
    is read once per process."""
    global _own
    me = os.getpid()
    if pid is not None and pid != me:
        return _read_stat(pid)[1]
    own_pid, ticks = _own
    if own_pid != me or not ticks:
        ticks = _read_stat(me)[1]
        _own = (me, ticks)
    return ticks


def _forget_own_in_child():
    global _own
    _own = (0, 0)


os.register_at_fork(after_in_child=_forget_own_in_child)


def _read_stat(pid):
    """(state, start time) from /proc/<pid>/stat: fields 3 and 22; (b"", 0) if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return b"", 0


# States of /proc/<pid>/stat that mean the process has ended: a zombie (Z, exited but
# not yet waited for by its parent) and dead (X). Neither runs code again.
_ENDED_STATES = (b"Z", b"X")


def process_is_running(pid, start_time):
    """True when a process with *pid* exists, has not ended (a zombie is gone) and (when
    *start_time* is non-zero) has that start time, so a reused pid does not count
    (docs/format.md section 8). Read fresh from /proc every time (never cached: the pid
    may have been reused since)."""
    if pid <= 0:
        return False
    state, ticks = _read_stat(pid)
    if not state:
        # Unreadable: only the directory can tell (the pid alone decides).
        return start_time == 0 and os.path.isdir(f"/proc/{pid}")
    if state in _ENDED_STATES:
        return False
    return start_time == 0 or ticks == start_time


def processes_mapping(inode, directory=None):
    """Pids of the processes whose /proc/<pid>/maps show a /dev/shm object (or a file of
    the directory backend's *directory*) with this inode mapped (where readable: other
    users' maps are skipped)."""
    return processes_mapping_any({inode}, directory).get(inode, [])


def processes_mapping_any(inodes, directory=None):
    """{inode: sorted pids} for the /dev/shm objects (or files in *directory*) of
    *inodes* that some process maps, in one pass over /proc (where readable)."""
    where = os.fsencode((directory or "/dev/shm") + "/")
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
                    and parts[5].startswith(where)):
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
