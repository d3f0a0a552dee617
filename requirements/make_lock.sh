#!/usr/bin/env bash
# Rewrites requirements/lock.txt from the environment in .venv (made by scripts/install, after any upgrade there):
# every installed distribution pinned with ==, the project itself and pip left out, torch without its local build
# label (torch==X matches X+cpu and X+cu128 alike, so the lock serves both builds).
set -euo pipefail
cd "$(dirname "$0")/.."
{
    echo "# Every package of pyterrier-setenc with all extras, pinned; used as pip install -c requirements/lock.txt"
    echo "# by scripts/install, .ci/run and tira/Dockerfile. Made by requirements/make_lock.sh from .venv on"
    echo "# Python $(.venv/bin/python -c 'import platform; print(platform.python_version())'), Linux x86_64."
    .venv/bin/python -m pip freeze --all --exclude-editable --disable-pip-version-check \
        | grep -v -i -E '^(pip|pyterrier-setenc)==' \
        | sed -E 's/^(torch==[^+]+)\+.*/\1/' \
        | LC_ALL=C sort -f -t= -k1,1
} > requirements/lock.txt.tmp
mv requirements/lock.txt.tmp requirements/lock.txt
