"""Binary wheels of sharedbridge: the pure wheel plus the compiled lock fast path (_fastlock), one
wheel per CPython minor version, each with the honest manylinux tag of the module it carries.

Usage: PYTHON scripts/binary_wheel.py PURE_WHEEL OUT_DIR INTERPRETER...

For each INTERPRETER (a CPython >= 3.10 with its headers), scripts/build_fastlock.py --out compiles
python/sharedbridge/_platform/_fastlock.c with that interpreter's compiler and headers; the module is
added to a copy of PURE_WHEEL (sharedbridge-V-py3-none-any.whl, built by scripts/dist.sh) as
sharedbridge/_platform/_fastlock<EXT_SUFFIX>, and the copy is written to OUT_DIR as
sharedbridge-V-cpXY-cpXY-<platform>.whl (Root-Is-Purelib false, RECORD rewritten). Interpreters of
one minor version give one wheel (the first one listed builds it).

The platform tag (docs/api.md, "Wheels"): manylinux_2_N_<arch>, where 2.N is the newest GLIBC_
symbol version the module needs (objdump -T: the versions of its undefined dynamic symbols), so the
tag claims no older glibc than the module runs on; the module may need only libraries every
manylinux system has (libc, libpthread, librt, libm, libdl: readelf -d NEEDED) and no versioned
symbol of any other library, else the wheel keeps the plain linux_<arch> tag, which pip installs
only on the machine type it was built for. auditwheel (not in Debian 12) does the same check and
more; a release builds in the manylinux images instead ([tool.cibuildwheel] in pyproject.toml).

Prints one line per wheel: its file name, the glibc versions it needs and why the tag.
Exit status 0 when every interpreter gave a wheel, 3 when one cannot build the module (no
compiler or no Python.h: that wheel is left out, the pure wheel serves it), 1 on an error.
"""

import base64
import csv
import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "scripts", "build_fastlock.py")
# The libraries the manylinux policies (PEP 600, auditwheel's policy file) let a module need.
MANYLINUX_LIBS = {"libc.so.6", "libpthread.so.0", "librt.so.1", "libm.so.6", "libdl.so.2"}
GLIBC_VERSION = re.compile(r"\bGLIBC_(\d+)\.(\d+)(?:\.\d+)?\b")
ARCHES = {"Advanced Micro Devices X86-64": "x86_64", "AArch64": "aarch64"}


def interpreter_facts(python):
    code = ("import sys, sysconfig; print('cp%d%d' % sys.version_info[:2]); "
            "print(sysconfig.get_config_var('EXT_SUFFIX')); print(sys.implementation.name)")
    tag, suffix, impl = subprocess.run([python, "-c", code], capture_output=True, text=True,
                                       check=True).stdout.split()
    return tag, suffix, impl


def needed(so):
    """(glibc versions needed, sorted; NEEDED libraries; other versioned symbols; ELF machine)."""
    dyn = subprocess.run(["objdump", "-T", so], capture_output=True, text=True, check=True).stdout
    versions, foreign = set(), set()
    for line in dyn.splitlines():
        if "*UND*" not in line:
            continue
        m = GLIBC_VERSION.search(line)
        if m:
            versions.add((int(m.group(1)), int(m.group(2))))
        elif re.search(r"\b[A-Z][A-Z0-9_]*_\d", line.split("*UND*", 1)[1]):
            foreign.add(line.split()[-1])
    dynamic = subprocess.run(["readelf", "-d", so], capture_output=True, text=True, check=True).stdout
    libs = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    header = subprocess.run(["readelf", "-h", so], capture_output=True, text=True, check=True).stdout
    machine = re.search(r"Machine:\s+(.+)", header).group(1).strip()
    return sorted(versions), libs, foreign, machine


def platform_tag(versions, libs, foreign, machine):
    arch = ARCHES.get(machine)
    if arch is None:
        raise SystemExit(f"binary_wheel: unknown ELF machine {machine!r}")
    newest = versions[-1] if versions else (2, 17)
    extra = sorted(libs - MANYLINUX_LIBS)
    if extra or foreign:
        return f"linux_{arch}", f"needs {', '.join(extra + sorted(foreign))}: not manylinux"
    return (f"manylinux_{newest[0]}_{newest[1]}_{arch}",
            f"newest symbol version GLIBC_{newest[0]}.{newest[1]}; libraries {', '.join(sorted(libs))}")


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def make_wheel(pure, out_dir, so_name, so_data, tag):
    """A copy of *pure* with the module added and the WHEEL tag and RECORD rewritten."""
    base = os.path.basename(pure)
    dist, version = base.split("-")[:2]
    info = f"{dist}-{version}.dist-info"
    target = os.path.join(out_dir, f"{dist}-{version}-{tag}.whl")
    rows = []
    with zipfile.ZipFile(pure) as src, zipfile.ZipFile(target + ".tmp", "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            name = item.filename
            if name == f"{info}/RECORD":
                continue
            data = src.read(name)
            if name == f"{info}/WHEEL":
                lines = [ln for ln in data.decode().splitlines()
                         if ln and not ln.startswith(("Tag:", "Root-Is-Purelib:", "Generator:"))]
                lines += ["Generator: sharedbridge scripts/binary_wheel.py", "Root-Is-Purelib: false",
                          f"Tag: {tag}"]
                data = ("\n".join(lines) + "\n\n").encode()
            info_out = zipfile.ZipInfo(name, date_time=item.date_time)
            info_out.external_attr = item.external_attr
            info_out.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(info_out, data)
            rows.append(record_line(name, data))
            if name == "sharedbridge/_platform/lock_core.py":
                so = zipfile.ZipInfo(so_name, date_time=item.date_time)
                so.external_attr = 0o755 << 16
                so.compress_type = zipfile.ZIP_DEFLATED
                dst.writestr(so, so_data)
                rows.append(record_line(so_name, so_data))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerows(rows + [[f"{info}/RECORD", "", ""]])
        dst.writestr(f"{info}/RECORD", buf.getvalue())
    if not any(r[0] == so_name for r in rows):
        os.unlink(target + ".tmp")
        raise SystemExit(f"binary_wheel: {pure} has no sharedbridge/_platform/lock_core.py")
    os.replace(target + ".tmp", target)
    return target


def main(argv):
    if len(argv) < 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    pure, out_dir, pythons = argv[0], argv[1], argv[2:]
    status, done = 0, set()
    for python in pythons:
        tag, suffix, impl = interpreter_facts(python)
        if impl != "cpython" or tag in done:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            so = os.path.join(tmp, "_fastlock" + suffix)
            built = subprocess.run([python, BUILD, "--quiet", "--out", so], capture_output=True, text=True)
            if built.returncode:
                print(f"{tag}: no binary wheel: {built.stdout.strip()} {built.stderr.strip()}")
                if built.returncode != 3:
                    return 1
                status = 3
                continue
            versions, libs, foreign, machine = needed(so)
            platform, why = platform_tag(versions, libs, foreign, machine)
            with open(so, "rb") as f:
                data = f.read()
        wheel = make_wheel(pure, out_dir, f"sharedbridge/_platform/_fastlock{suffix}", data,
                           f"{tag}-{tag}-{platform}")
        done.add(tag)
        glibc = " ".join(f"{a}.{b}" for a, b in versions)
        print(f"{os.path.basename(wheel)}: glibc versions needed {glibc}; {why}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
