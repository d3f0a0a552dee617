#!/usr/bin/env bash
# Builds tira/Dockerfile with podman, offline, and runs the image as TIREx runs it on the TIREx sample of the offline
# data; fails unless the image writes a valid TREC run with every input pair. Removes everything it made on exit.
#
#   bash tira/check-image.sh                      # the CPU image (TORCH=cpu), as .ci/run runs it
#   SETENC_IMAGE_CUDA=1 bash tira/check-image.sh  # the CUDA image too (TORCH=cuda: several GB from PyPI, see README)
#
# Steps (each prints its time): tools (podman, runc, debootstrap from Debian's packages when missing, as root); a
# stand-in for the Dockerfile's base python:X.Y.Z-slim-bookworm (a minimal bookworm from debootstrap plus a CPython
# X.Y.Z of this machine, imported under the base's name, so the build never pulls); a wheelhouse filled on this
# machine with pip download from the lock file; podman build --pull=never --network none with the wheelhouse mounted
# (WHEELHOUSE=/wheels); podman run --network none with the sample mounted read-only at /input and $inputDataset and
# $outputDir set, as TIRA does; checks of run.txt (below, and tira's check_format when the tira client is installed);
# with SETENC_IMAGE_TIRA_RUN=1, the same through tira-run (below).
#
# Environment: SETENC_DATA_DIR (default ../shared/data), SETENC_IMAGE_PYTHON (a CPython of the base's version, default:
# python3 or pyenv's of that version), SETENC_IMAGE_MODEL (default pyterrier_setenc.embedded.SET_ENCODER, the
# checkpoint shipped in the package: a Hugging Face id needs the Hub at build time), SETENC_IMAGE_WORK (where the
# folder for podman's storage, the base and the wheels is made, outside the repository; default ${TMPDIR:-/var/tmp};
# the folder is removed on exit), SETENC_IMAGE_TMPFS (below).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DOCKERFILE=$REPO/tira/Dockerfile
DATA=${SETENC_DATA_DIR:-$REPO/../shared/data}
SAMPLE=$DATA/tirex-sample
MODEL=${SETENC_IMAGE_MODEL:-pyterrier_setenc.embedded.SET_ENCODER}
CUDA=${SETENC_IMAGE_CUDA:-0}
IMAGE=localhost/pyterrier-setenc-tirex:check
START=$SECONDS
TIMINGS=()

say() { echo "check-image: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
step_start=$SECONDS
step() {  # step NAME: the time since the previous step, under the previous step's name
    local now=$SECONDS
    if [ -n "${step_name:-}" ] && [ "$step_name" != end ]; then
        TIMINGS+=("$step_name $((now - step_start)) s")
        say "   $step_name took $((now - step_start)) s"
    fi
    step_name=$1 step_start=$now
    [ "$1" = end ] || say "== $1"
}

[ -f "$SAMPLE/rerank.jsonl.gz" ] || fail "no TIREx sample: $SAMPLE/rerank.jsonl.gz (set SETENC_DATA_DIR)"
BASE=$(sed -n 's/^FROM \(python:[^ ]*\).*/\1/p' "$DOCKERFILE" | sort -u)
[ "$(echo "$BASE" | wc -l)" = 1 ] || fail "$DOCKERFILE: expected one python base image, found: $BASE"
PY_VERSION=$(echo "$BASE" | sed -n 's/^python:\([0-9]*\.[0-9]*\.[0-9]*\)-slim-\([a-z]*\)$/\1/p')
SUITE=$(echo "$BASE" | sed -n 's/^python:[0-9.]*-slim-\([a-z]*\)$/\1/p')
[ -n "$PY_VERSION" ] && [ -n "$SUITE" ] || fail "$DOCKERFILE: base $BASE is not python:X.Y.Z-slim-SUITE"

# --- tools --------------------------------------------------------------------------------------------------------
step tools
missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || fail "missing ${missing[*]}: install them (apt-get install podman runc debootstrap)"
    say "installing ${missing[*]} from Debian's packages"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi
[ "$(id -u)" = 0 ] || fail "run as root (debootstrap and podman's overlay storage need it)"

PYTHON=""
for candidate in ${SETENC_IMAGE_PYTHON:-} python3 python3.11 "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/$PY_VERSION/bin/python3"; do
    [ -n "$candidate" ] && command -v "$candidate" >/dev/null || continue
    if [ "$("$candidate" -c 'import platform; print(platform.python_version())' 2>/dev/null)" = "$PY_VERSION" ]; then
        PYTHON=$(command -v "$candidate"); break
    fi
done
[ -n "$PYTHON" ] || fail "no CPython $PY_VERSION (the base image's) here: set SETENC_IMAGE_PYTHON to one"
PREFIX=$("$PYTHON" -c 'import sys; print(sys.base_prefix)')
PY_MINOR=${PY_VERSION%.*}
[ -x "$PREFIX/bin/python$PY_MINOR" ] && [ -d "$PREFIX/lib/python$PY_MINOR" ] \
    || fail "$PYTHON: not an installed CPython (no $PREFIX/bin/python$PY_MINOR)"
say "CPython $PY_VERSION from $PREFIX"

# podman, apart from anything else on this machine: its own configuration and storage in WORK, runc, cgroupfs, and
# limits the host allows (podman's default asks for more open files than this machine grants)
PARENT=${SETENC_IMAGE_WORK:-${TMPDIR:-/var/tmp}}
mkdir -p "$PARENT"
WORK=$(mktemp -d "$(cd "$PARENT" && pwd)/setenc-image-check.XXXXXX")
case "$WORK" in "$REPO"|"$REPO"/*) rmdir "$WORK"; fail "SETENC_IMAGE_WORK must be outside the repository";; esac
PODMAN_READY=0 MOUNTED=0
cleanup() {
    local code=$? t=$SECONDS
    set +e
    if [ -n "${SERVICE:-}" ]; then kill "$SERVICE"; wait "$SERVICE" 2>/dev/null; fi
    if [ "$PODMAN_READY" = 1 ]; then  # only with this script's own configuration: never the machine's other images
        podman rm -af >/dev/null 2>&1
        podman rmi -af >/dev/null 2>&1
        podman system reset -f >/dev/null 2>&1
    fi
    if [ "$MOUNTED" = 1 ]; then umount "$WORK" || umount -l "$WORK"; fi
    rm -rf "$WORK"
    step end
    TIMINGS+=("clean-up $((SECONDS - t)) s")
    say "timings: ${TIMINGS[*]/%/;} total $((SECONDS - START)) s"
    [ $code = 0 ] && say OK
    exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# In memory where there is room (the CPU image's build held 8.6 GB at its peak; on disk, writing and removing the
# layers took most of the check's time): SETENC_IMAGE_TMPFS=SIZE (e.g. 14g), 0 for the disk; by default 14g for the CPU image
# when 18 GiB of memory are available.
TMPFS=${SETENC_IMAGE_TMPFS:-auto}
if [ "$TMPFS" = auto ]; then
    TMPFS=0
    if [ "$CUDA" != 1 ] && [ "$(awk '/^MemAvailable:/ {print int($2 / 1048576)}' /proc/meminfo)" -ge 18 ]; then TMPFS=14g; fi
fi
if [ "$TMPFS" != 0 ]; then
    mount -t tmpfs -o "size=$TMPFS,mode=0700" setenc-image-check "$WORK" || fail "mount -t tmpfs on $WORK"
    MOUNTED=1
    say "working in memory (tmpfs, at most $TMPFS) in $WORK"
fi
mkdir -p "$WORK/storage" "$WORK/run" "$WORK/tmp" "$WORK/wheels" "$WORK/output"
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf TMPDIR=$WORK/tmp
PODMAN_READY=1
podman info >/dev/null || fail "podman does not start (podman info)"

# --- the stand-in base: minimal Debian SUITE, the shared libraries CPython's modules use, CPython in /usr/local -----
step base
ROOT=$WORK/rootfs
debootstrap --variant=minbase \
    --include=ca-certificates,libssl3,libsqlite3-0,libffi8,libbz2-1.0,liblzma5,libreadline8,libncursesw6,libtirpc3,libexpat1,libuuid1,netbase,tzdata \
    "$SUITE" "$ROOT" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap $SUITE"; }
mkdir -p "$ROOT/usr/local/bin" "$ROOT/usr/local/lib"
cp -a "$PREFIX/bin/python$PY_MINOR" "$ROOT/usr/local/bin/"
cp -a "$PREFIX"/lib/libpython3*.so* "$ROOT/usr/local/lib/"
tar -C "$PREFIX/lib" --exclude="python$PY_MINOR/site-packages/*" --exclude="python$PY_MINOR/test" \
    --exclude='__pycache__' -cf - "python$PY_MINOR" | tar -C "$ROOT/usr/local/lib" -xf -
for name in python3 python; do ln -sf "python$PY_MINOR" "$ROOT/usr/local/bin/$name"; done
chroot "$ROOT" /sbin/ldconfig
chroot "$ROOT" /usr/local/bin/python3 -m ensurepip --default-pip >"$WORK/ensurepip.log" 2>&1 \
    || { tail -20 "$WORK/ensurepip.log" >&2; fail "ensurepip in the stand-in base"; }
chroot "$ROOT" /usr/local/bin/python3 -c \
    "import ssl, sqlite3, ctypes, bz2, lzma, zlib, hashlib, decimal, uuid, json, venv, ensurepip, pip; print('base python ok')" \
    || fail "the stand-in base's CPython misses a module"
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
tar -C "$ROOT" -cf - . | podman import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change "ENV PYTHON_VERSION=$PY_VERSION" --change 'CMD ["python3"]' \
    - "docker.io/library/$BASE" >"$WORK/import.log" 2>&1 || { cat "$WORK/import.log" >&2; fail "podman import"; }
rm -rf "$ROOT"

# --- the wheelhouse: every wheel the build installs, from the lock file, for this Python ---------------------------
step wheels
torch_version=$(sed -n 's/^torch==//p' "$REPO/requirements/lock.txt")
[ -n "$torch_version" ] || fail "no torch==VERSION in requirements/lock.txt"
download() {  # pip's output goes to a log, shown when it fails
    (cd "$REPO" && "$PYTHON" -m pip download --disable-pip-version-check --only-binary=:all: \
        -c requirements/lock.txt --find-links "$WORK/wheels" -d "$WORK/wheels" "$@") >>"$WORK/pip.log" 2>&1 \
        || { grep -v '^WARNING: Location' "$WORK/pip.log" | tail -20 >&2; return 1; }
}
# PyTorch's CPU build: from pip's own sources where they have it (a wheel in its find-links), else PyTorch's index
download --no-deps "torch==$torch_version+cpu" 2>/dev/null \
    || download --no-deps --extra-index-url https://download.pytorch.org/whl/cpu "torch==$torch_version+cpu" \
    || fail "pip download torch==$torch_version+cpu"
download "torch==$torch_version+cpu" ".[tira]" setuptools || fail "pip download .[tira]"
if [ "$CUDA" = 1 ]; then  # PyPI's build, CUDA's libraries with it
    download "torch===$torch_version" || fail "pip download torch===$torch_version (the CUDA build)"
fi
say "wheelhouse: $(find "$WORK/wheels" -name '*.whl' | wc -l) wheels, $(du -sh "$WORK/wheels" | cut -f1)"

# --- build, run as TIREx does, check ---------------------------------------------------------------------------------
check_run() {  # check_run RUN_FILE: a TREC run with every (qid, docno) pair of the sample, as TIREx normalises runs
    local python=$PYTHON
    [ -x "$REPO/.venv/bin/python" ] && python=$REPO/.venv/bin/python
    "$python" - "$SAMPLE/rerank.jsonl.gz" "$1" <<'PY'
import gzip, json, math, sys
from pathlib import Path

source, run = sys.argv[1], Path(sys.argv[2])
pairs = {(str(row["qid"]), str(row["docno"])) for row in map(json.loads, gzip.open(source, "rt")) if row}
lines = run.read_text().splitlines()
seen, last = set(), {}
for number, line in enumerate(lines, 1):
    fields = line.split()
    assert len(fields) == 6 and fields[1] == "Q0", f"{run}:{number}: not 'qid Q0 docno rank score tag': {line!r}"
    qid, _, docno, rank, score, _ = fields
    rank, score = int(rank), float(score)
    assert math.isfinite(score), f"{run}:{number}: score {score}"
    previous = last.get(qid)
    assert rank == (previous[0] + 1 if previous else 1), f"{run}:{number}: rank {rank} out of order"
    assert previous is None or score <= previous[1], f"{run}:{number}: scores not descending"
    assert (qid, docno) not in seen, f"{run}:{number}: ({qid}, {docno}) twice"
    seen.add((qid, docno))
    last[qid] = (rank, score)
assert seen == pairs, f"{run}: missing {sorted(pairs - seen)[:5]}, extra {sorted(seen - pairs)[:5]}"
print(f"run.txt: {len(lines)} lines, every one of the {len(pairs)} input pairs")
import hashlib
metadata = run.parent / "ir-metadata.yml"
assert metadata.is_file(), f"{metadata}: missing beside run.txt"
try:
    import yaml
except ImportError:
    print("ir-metadata.yml: PyYAML is not installed here, its fields are not read")
else:
    meta = yaml.safe_load(metadata.read_text(encoding="utf-8"))
    digest = hashlib.sha256(run.read_bytes()).hexdigest()
    assert meta["results"]["run.txt"]["sha256"] == digest, f"{metadata}: describes another run.txt"
    print(f"ir-metadata.yml: {meta['method']['name']}, torch {meta['platform']['software']['torch']}, "
          f"{meta['platform']['hardware']['cpu']['model']}, {meta['resources']['runtime']['wallclock']}")
try:
    from tira.check_format import check_format
except ImportError:
    print("tira's check_format: the tira client is not installed, skipped")
else:
    for name, configuration in (("run.txt", {"minimum_queries": 1}), ("ir_metadata", None)):
        result = check_format(run.parent, name, configuration)
        print(f"tira's check_format ({name}): {result}")
        assert getattr(result[0], "name", result[0]) == "OK", result
PY
}

build_and_run() {  # build_and_run TORCH
    local torch=$1 output=$WORK/output/$1
    step "build ($torch)"
    (while sleep 2; do df --output=used -B1M "$WORK" | tail -1; done >"$WORK/used-$torch.log") & local sampler=$!
    podman build --pull=never --network none --layers=false -f "$DOCKERFILE" -t "$IMAGE-$torch" \
        -v "$WORK/wheels:/wheels:ro" --build-arg WHEELHOUSE=/wheels --build-arg TORCH="$torch" \
        --build-arg MODEL="$MODEL" "$REPO" >"$WORK/build-$torch.log" 2>&1 \
        || { tail -40 "$WORK/build-$torch.log" >&2; fail "podman build (TORCH=$torch)"; }
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    say "$WORK held at most $(sort -n "$WORK/used-$torch.log" | tail -1) MB during the build"
    say "image $IMAGE-$torch: $(podman image inspect --format '{{.Size}}' "$IMAGE-$torch" | awk '{printf "%.0f MB", $1 / 1e6}')"
    step "run ($torch)"
    mkdir -p "$output"
    podman run --rm --network none -v "$SAMPLE:/input:ro" -v "$output:/output" \
        -e inputDataset=/input -e outputDir=/output "$IMAGE-$torch" \
        || fail "the image (TORCH=$torch) exited with $?"
    check_run "$output/run.txt" || fail "run.txt of the image (TORCH=$torch)"
    [ -n "$TIRA_RUN" ] || return 0
    step "tira-run ($torch)"  # tira's own runner, against podman's Docker-compatible socket
    if [ -z "$SERVICE" ]; then
        podman system service --time=0 "unix://$WORK/podman.sock" >"$WORK/service.log" 2>&1 & SERVICE=$!
        for _ in $(seq 50); do [ -S "$WORK/podman.sock" ] && break; sleep 0.2; done
    fi
    mkdir -p "$output-tira"
    DOCKER_HOST=unix://$WORK/podman.sock timeout 600 "$TIRA_RUN" --input-directory "$SAMPLE" --image "$IMAGE-$torch" \
        --output-directory "$output-tira" >"$WORK/tira-run-$torch.log" 2>&1 \
        || { tail -30 "$WORK/tira-run-$torch.log" >&2; fail "tira-run (TORCH=$torch)"; }
    check_run "$output-tira/run.txt" || fail "run.txt of tira-run (TORCH=$torch)"
}

# tira-run too, with SETENC_IMAGE_TIRA_RUN=1 where the tira client is installed. Not by default: against podman 4.3's
# socket, tira 0.0.207's tira-run runs the image but then fails printing the container's log (UnicodeDecodeError: it
# prints the log stream's frame headers too, and a header byte of 0x80 or more is not UTF-8).
TIRA_RUN="" SERVICE=""
if [ "${SETENC_IMAGE_TIRA_RUN:-0}" = 1 ]; then
    for candidate in "$REPO/.venv/bin/tira-run" "$(command -v tira-run || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then TIRA_RUN=$candidate; break; fi
    done
fi
build_and_run cpu
if [ "$CUDA" = 1 ]; then build_and_run cuda; fi
