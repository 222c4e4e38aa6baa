"""What /proc says about other processes: who maps a segment now."""

import os


def processes_mapping(inode):
    """Pids of the processes whose /proc/<pid>/maps show a /dev/shm object with this
    inode mapped (where readable: other users' maps are skipped)."""
    wanted = str(inode)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/maps", "rb") as f:
                data = f.read()
        except OSError:
            continue
        for line in data.split(b"\n"):
            parts = line.split(None, 5)
            if (len(parts) == 6 and parts[4].decode() == wanted
                    and parts[5].startswith(b"/dev/shm/")):
                pids.append(int(entry))
                break
    return sorted(pids)
