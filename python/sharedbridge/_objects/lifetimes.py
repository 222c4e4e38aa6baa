"""Segment lifetimes (creator, last-closer, persistent) and reap(): docs/format.md section 8.

reap() removes the segments that are garbage by the rules of the header alone: a
``creator`` segment whose creator (pid + start time) is gone, a ``last-closer`` segment
that no process holds open (the reaper gets the exclusive flock without waiting).
``persistent`` segments, version-1 segments (their header does not say whether they were
kept), segments still initializing, corrupt or foreign objects and other users' objects
are never touched, and not reported.
"""

import os

from .._format import header as H
from .._platform import segment as S
from .._platform.process_info import process_is_running

__all__ = ["ReapedSegment", "reap", "lifetime_code"]


def lifetime_code(lifetime, keep):
    """The header's lifetime byte for a create's ``lifetime=`` and ``keep=`` arguments:
    keep=True is an alias of lifetime="persistent"; lifetime=None means "creator"."""
    if keep not in (True, False):
        raise TypeError(f"keep must be True or False, not {keep!r}")
    if lifetime is None:
        return H.LIFETIME_PERSISTENT if keep else H.LIFETIME_CREATOR
    code = H.lifetime_code(lifetime)
    if keep and code != H.LIFETIME_PERSISTENT:
        raise ValueError(
            f"contradictory options: keep=True means lifetime='persistent', but "
            f"lifetime={lifetime!r} was given; pass only one of them")
    return code


class ReapedSegment:
    """One segment reap() removed (or, in a dry run, would remove)."""

    __slots__ = ("name", "reason", "removed")

    def __init__(self, name, reason, removed):
        self.name = name          # the segment name (no leading slash)
        self.reason = reason      # why it is garbage, for people
        self.removed = removed    # False in a dry run

    def __repr__(self):
        return (f"ReapedSegment(name={self.name!r}, reason={self.reason!r}, "
                f"removed={self.removed!r})")

    def __eq__(self, other):
        if not isinstance(other, ReapedSegment):
            return NotImplemented
        return (self.name, self.reason, self.removed) == (other.name, other.reason,
                                                         other.removed)

    __hash__ = None


def reap(*, dry_run=False, prefix=None):
    """Remove the SharedBridge segments in /dev/shm that are garbage (docs/format.md
    section 8) and return what was removed, as ReapedSegment objects (name, reason,
    removed). dry_run=True removes nothing (removed=False). prefix limits it to names
    starting with that string. Call it at start-up to clean up after a crashed
    predecessor; it never touches persistent segments or anything it cannot prove dead."""
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string or None, not {type(prefix).__name__}")
    reaped = []
    for name in S.shm_names():
        if prefix and not name.startswith(prefix):
            continue
        found = S.open_for_reap(name)
        if found is None:
            continue
        fd, st, seg = found
        try:
            result = _judge(name, fd, st, seg.header, dry_run)
        finally:
            S.close_unlocked(fd)      # seg's mapping would keep an exclusive lock alive
        if result is not None:
            reaped.append(result)
    return reaped


def _judge(name, fd, st, header, dry_run):
    if header.version < 2:
        return None
    if header.lifetime_code == H.LIFETIME_CREATOR:
        if process_is_running(header.creator_pid, header.creator_start_time):
            return None
        reason = (f"creator pid {header.creator_pid} (started {header.creator_start_time}) "
                  "is gone")
    elif header.lifetime_code == H.LIFETIME_LAST_CLOSER:
        # Holding the exclusive lock also keeps attachers out until the name is gone:
        # they re-check the name after their shared lock (section 8).
        if not S.try_exclusive(fd):
            return None
        reason = "last-closer: no process holds it open"
    else:
        return None
    if dry_run:
        return ReapedSegment(name, reason, False)
    if not S.same_object(name, st):
        return None             # replaced since it was judged: not ours to remove
    S.retire_by_descriptor(fd)
    return ReapedSegment(name, reason, True) if S.unlink_if_same(name, st) else None
