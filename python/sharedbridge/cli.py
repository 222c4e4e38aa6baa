"""`sharedbridge`: look at, clean up and repair the segments in /dev/shm (docs/cli.md).

The same verbs, output and --json schema as the .NET tool `sharedbridge`. Built on the
public API only (list_segments, inspect_segment, unlink, reset_lock). Exit status: 0 ok,
1 an error (unknown name, corrupt segment, refused action), 2 a wrong command line.
"""

import argparse
import json
import shlex
import sys

from . import (SegmentInUseError, SharedBridgeError, TypeMismatchError, inspect_segment,
               list_segments, reap, reset_lock, unlink)
from ._format.header import STRUCT

PROG = "sharedbridge"

# The keys of one segment in `ls --json` and `inspect --json`, in order (docs/cli.md).
INFO_KEYS = ("name", "status", "reason", "kind", "typecode", "type_name", "length", "shape",
             "ndim", "bytes",
             "lock", "lock_name", "lock_state", "lock_holder_pid", "recoveries", "state",
             "lifetime", "creator_pid", "creator_start_time", "creator_alive", "created_unix_ns",
             "age_seconds", "mapped_by", "sync", "queue")
HEADER_KEYS = ("version", "compat_version", "header_size", "kind", "typecode",
               "element_size", "element_count", "data_offset", "data_size", "lock_kind",
               "lock_abi", "lock_size", "lock_offset", "lock_type", "lifetime_code", "type_name",
               "lock_name", "creator_pid", "creator_start_time", "created_unix_ns", "state")
CONTROL_KEYS = ("header_crc32", "recovery_count", "last_recovered_pid")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser():
    p = _Parser(prog=PROG, description="Look at, clean up and repair SharedBridge "
                "shared-memory segments in /dev/shm.",
                epilog="exit status: 0 ok, 1 error (unknown name, corrupt segment, refused "
                "action), 2 usage error. See docs/cli.md.")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    ls = sub.add_parser("ls", help="list the SharedBridge segments in /dev/shm",
                        description="List the SharedBridge segments in /dev/shm: kind, "
                        "element type, length, size, lock and its state, state, creator, "
                        "the processes that map each one, age.")
    ls.add_argument("--all", action="store_true",
                    help="also list objects that are not SharedBridge segments")
    ls.add_argument("--prefix", help="only names starting with PREFIX")
    ls.add_argument("--json", action="store_true", help="one JSON array (docs/cli.md)")
    ins = sub.add_parser("inspect", help="show one segment: header, field tree, lock, data",
                         description="Show one segment: its whole decoded header, the "
                         "field table as a tree, its lock's state and its first elements.")
    ins.add_argument("name")
    ins.add_argument("--data", type=_count, default=0, metavar="N",
                     help="also show the first N elements (read without the lock)")
    ins.add_argument("--json", action="store_true", help="one JSON object (docs/cli.md)")
    rp = sub.add_parser("reap", help="remove the segments left behind by dead processes",
                        description="Remove the SharedBridge segments that are garbage "
                        "(docs/format.md section 8): a 'creator' segment whose creator is gone, "
                        "a 'last-closer' segment that no process holds open. Persistent, "
                        "version-1, corrupt, foreign and other users' objects are never "
                        "touched. A dry run unless --yes.")
    rp.add_argument("--yes", action="store_true", help="really remove them")
    rp.add_argument("--prefix", help="only names starting with PREFIX")
    rp.add_argument("--json", action="store_true", help="one JSON array (docs/cli.md)")
    un = sub.add_parser("unlink", help="remove a segment's name",
                        description="Remove the name of segment NAME from /dev/shm; "
                        "processes that map it keep their memory.")
    un.add_argument("name")
    rl = sub.add_parser("reset-lock", help="re-initialize a not-recoverable or corrupt lock",
                        description="Re-initialize the lock of segment NAME when it is not "
                        "recoverable or corrupt (docs/format.md section 7.4); refused while "
                        "another process maps the segment. A healthy lock is left alone.")
    rl.add_argument("name")
    dir_help = ("the directory backend's directory (docs/format.md section 1.3) instead of "
                "/dev/shm; default: SHAREDBRIDGE_DIR")
    for command in (ls, ins, rp, un, rl):
        command.add_argument("--dir", metavar="DIR", help=dir_help)
    return p


def _count(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {n}")
    return n


def main(argv=None):
    """Run the command line *argv* (default sys.argv[1:]); returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _VERBS[args.verb](args)
    except BrokenPipeError:         # `sharedbridge ls | head`
        return 1
    except (SharedBridgeError, OSError, ValueError) as e:
        return _fail(args.verb, e)


def _fail(verb, e):
    message = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    print(f"{PROG} {verb}: {message}", file=sys.stderr)
    return 1


# ---------------------------------------------------------------------------- ls

def info_json(info):
    """One segment as `ls --json` shows it."""
    d = {k: getattr(info, k) for k in INFO_KEYS}
    d["mapped_by"] = list(info.mapped_by)
    if info.shape is not None:
        d["shape"] = list(info.shape)
    return d


def _ls(args):
    infos = list_segments(include_foreign=args.all, prefix=args.prefix, dir=args.dir)
    if args.json:
        _print_json([info_json(i) for i in infos])
        return 0
    rows = [("NAME", "KIND", "TYPE", "LENGTH", "SYNC", "BYTES", "LOCK", "LOCK STATE",
             "RECOVERIES", "STATE", "LIFETIME", "CREATOR", "MAPPED BY", "AGE")]
    for i in infos:
        if i.status != "ok":
            rows.append((i.name, "-", "-", "-", "-", _text(i.bytes), "-", "-", "-",
                         i.state or i.status, "-", "-", _pids(i.mapped_by), "-", i.reason))
            continue
        rows.append((i.name, i.kind, type_text(i), length_text(i), sync_text(i), str(i.bytes),
                     lock_text(i), lock_state_text(i), _text(i.recoveries), i.state,
                     i.lifetime, creator_text(i), _pids(i.mapped_by), age_text(i.age_seconds)))
    print(_table(rows))
    return 0


def _table(rows):
    widths = [max(len(r[c]) for r in rows if c < len(r)) for c in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [cell.ljust(widths[c]) if c < len(widths) else cell for c, cell in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _text(v):
    return "-" if v is None else str(v)


def _pids(pids):
    return ",".join(map(str, pids)) or "-"


def type_text(i):
    """TYPE: the element type; '-' for a lock and the synchronization kinds (their 16
    words are not data: SYNC decodes them)."""
    return "-" if i.sync is not None or i.queue is not None else i.element_type or "-"


def length_text(i):
    """LENGTH: the elements (then an n-dimensional array's shape: '24 [2, 3, 4]'); a
    queue's depth (its ready messages); '-' for the synchronization kinds."""
    if i.queue is not None:
        return str(i.queue["count"])
    if i.shape is not None:
        return f"{i.length} {shape_text(i.shape)}"
    return "-" if i.sync is not None else str(i.length)


def shape_text(shape):
    """An n-dimensional array's shape as both CLIs print it: '[2, 3, 4]', '[]' for rank 0."""
    return "[" + ", ".join(str(n) for n in shape) + "]"


def queue_text(q):
    """A queue's depth, capacity and counts for people (the SYNC column of ls, inspect)."""
    bound = "" if q["max_messages"] == 0x7FFFFFFF else f" of {q['max_messages']}"
    text = (f"{q['count']}{bound} ready, {q['bytes_used']} of {q['capacity']} bytes, "
            f"{q['puts']} put, {q['gets']} got")
    if q["unfinished"]:
        text += f", {q['unfinished']} unfinished"
    if q["readers_waiting"]:
        text += f", {q['readers_waiting']} reading"
    if q["writers_waiting"]:
        text += f", {q['writers_waiting']} writing"
    return text + ", completed" if q["completed"] else text


def sync_text(i):
    """SYNC: a synchronization object's words for people (docs/cli.md), '-' otherwise."""
    if i.queue is not None:
        return queue_text(i.queue)
    w = i.sync
    if w is None:
        return "-"
    if i.kind == "event":
        text = {0: "clear", 1: "set"}.get(w["flag"], f"flag {w['flag']} (corrupt)")
    elif i.kind == "semaphore":
        text = f"value {w['value']}"
        if w["bounded"]:
            text += f" of at most {w['max_value']}"
    elif i.kind == "barrier":
        text = f"{w['state']}, {w['count']} of {w['parties']} parties waiting"
    else:
        text = ""
    waiting = f"{w['waiters']} waiting"
    if i.kind == "barrier":
        return text
    return f"{text}, {waiting}" if text and w["waiters"] else text or waiting


def lock_text(i):
    if i.lock == "external":
        return f"-> {i.lock_name}"
    return i.lock


def lock_state_text(i):
    if i.lock_state is None:
        return "-"
    if i.lock_state == "held" and i.lock_holder_pid:
        return f"held by pid {i.lock_holder_pid}"
    if i.lock_state == "owner dead":
        return "owner dead: will be recovered"
    return i.lock_state


def creator_text(i):
    return f"{i.creator_pid} ({'alive' if i.creator_alive else 'dead'})"


def age_text(seconds):
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


# ---------------------------------------------------------------------------- inspect

def field_tree(fields, parent=-1):
    """The field table as nested nodes: name, typecode, offset, count, item_size, fields."""
    return [{"name": f.name, "typecode": f.typecode, "offset": f.offset, "count": f.count,
             "item_size": f.item_size, "fields": field_tree(fields, index)}
            for index, f in enumerate(fields) if f.parent == parent]


def inspect_json(info):
    """One segment as `inspect --json` shows it."""
    d = info_json(info)
    h = info.header
    if h is None:
        d["header"] = None
    else:
        d["header"] = {k: getattr(h, k) for k in HEADER_KEYS}
        d["header"].update({k: getattr(info, k) for k in CONTROL_KEYS})
    d["fields"] = field_tree(h.fields) if h is not None else []
    d["data"] = list(info.elements)
    return d


def _inspect(args):
    info = inspect_segment(args.name, data=args.data, dir=args.dir)
    if args.json:
        _print_json(inspect_json(info))
    else:
        _print_inspect(info)
    if info.status != "ok":
        print(f"{PROG} inspect: {args.name}: {info.status}: {info.reason}", file=sys.stderr)
        return 1
    return 0


def _print_inspect(info):
    out = [f"name: {info.name}", f"status: {info.status}"]
    if info.status != "ok":
        out.append(f"reason: {info.reason}")
        out.append(f"bytes: {_text(info.bytes)}")
    else:
        out += [f"kind: {info.kind}", f"element type: {type_text(info)}",
                f"length: {length_text(info)}"]
        if info.shape is not None:
            out += [f"shape: {shape_text(info.shape)}", f"ndim: {info.ndim}"]
        out += [f"sync: {sync_text(info)}",
                f"bytes: {info.bytes}", f"lock: {lock_text(info)}",
                f"lock state: {lock_state_text(info)}", f"recoveries: {_text(info.recoveries)}",
                f"state: {info.state}", f"lifetime: {info.lifetime}",
                f"creator: {creator_text(info)}",
                f"age: {age_text(info.age_seconds)}"]
    out.append(f"mapped by: {_pids(info.mapped_by)}")
    if info.header is not None:
        out.append("header:")
        h = info.header
        out += [f"  {k}: {getattr(h, k)!r}" if isinstance(getattr(h, k), str)
                else f"  {k}: {getattr(h, k)}" for k in HEADER_KEYS]
        out += [f"  {k}: {getattr(info, k)}" for k in CONTROL_KEYS]
        if h.fields:
            out.append(f"fields of {h.type_name or STRUCT}:")
            _tree_lines(field_tree(h.fields), 1, out)
    if info.elements:
        out.append(f"data (first {len(info.elements)}):")
        out += [f"  [{n}] {json.dumps(v)}" for n, v in enumerate(info.elements)]
    print("\n".join(out))


def _tree_lines(nodes, depth, out):
    for node in nodes:
        count = f"[{node['count']}]" if node["count"] != 1 else ""
        out.append(f"{'  ' * depth}{node['name']}{count}: '{node['typecode']}' at offset "
                   f"{node['offset']}, {node['item_size']} bytes each")
        _tree_lines(node["fields"], depth + 1, out)


# ---------------------------------------------------------------------------- actions

def _reap(args):
    reaped = reap(dry_run=not args.yes, prefix=args.prefix, dir=args.dir)
    if args.json:
        _print_json([{"name": r.name, "reason": r.reason, "removed": r.removed,
                      "mapped_by": list(r.mapped_by)} for r in reaped])
        return 0
    for r in reaped:
        print(f"{'removed' if r.removed else 'would remove'} {r.name}: {r.reason}"
              f"{still_mapped_text(r.mapped_by, r.removed)}")
    if not reaped:
        print("nothing to reap")
    elif args.yes:
        print(f"removed {len(reaped)} segment(s)")
    else:
        # The user's own filters: the suggested command removes what this run listed.
        command = f"{PROG} reap --yes"
        if args.prefix is not None:
            command += f" --prefix {shlex.quote(args.prefix)}"
        if args.dir is not None:
            command += f" --dir {shlex.quote(args.dir)}"
        print(f"dry run: {len(reaped)} segment(s) would be removed; run `{command}` to remove "
              "them")
    return 0


def still_mapped_text(pids, removed):
    """What a reap line adds when other processes still map the segment."""
    if not pids:
        return ""
    who = f"pid {pids[0]}" if len(pids) == 1 else f"pids {_pids(pids)}"
    them = "it" if len(pids) == 1 else "them"
    if removed:
        return f" (still mapped by {who}: memory stays valid for {them}, the name is gone)"
    return (f" (still mapped by {who}: memory would stay valid for {them}, the name would "
            "be gone)")


def _unlink(args):
    unlink(args.name, dir=args.dir)
    print(f"unlinked {args.name}")
    return 0


def _reset_lock(args):
    try:
        done = reset_lock(args.name, dir=args.dir)
    except SegmentInUseError as e:
        return _fail("reset-lock", e)
    except TypeMismatchError as e:
        return _fail("reset-lock", e)
    print(f"reset the lock of {args.name}" if done
          else f"the lock of {args.name} is healthy: nothing done")
    return 0


def _print_json(value):
    print(json.dumps(value, indent=2))


_VERBS = {"ls": _ls, "inspect": _inspect, "reap": _reap, "unlink": _unlink,
          "reset-lock": _reset_lock}


if __name__ == "__main__":
    sys.exit(main())
