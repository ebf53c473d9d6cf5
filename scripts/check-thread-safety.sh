#!/usr/bin/env bash
# Clang's thread-safety analysis over every source under server/: the
# ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED annotations are checked, not
# just comments. Compiles each file with clang-14 -fsyntax-only
# -Wthread-safety -Werror (no code generated, so it takes a few minutes, not a
# build), with the flags CMake recorded for it in BUILD_DIR's
# compile_commands.json (the main g++ build).
# Usage: scripts/check-thread-safety.sh [BUILD_DIR]   (default build)
# Exit status: 0 clean, 1 a finding (printed), 2 no compile database.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
DB=$BUILD/compile_commands.json
[ -f "$DB" ] || { echo "check-thread-safety: no $DB (run make build first)" >&2; exit 2; }
CLANG=${CLANG:-clang++-14}
command -v "$CLANG" >/dev/null || { echo "check-thread-safety: $CLANG not found (scripts/install-deps.sh)" >&2; exit 2; }

/usr/bin/python3 - "$DB" "$ROOT" "$CLANG" <<'PY'
import concurrent.futures, json, os, shlex, subprocess, sys
db, root, clang = sys.argv[1:4]
jobs = []
for entry in json.load(open(db)):
    path = entry["file"]
    if not path.startswith(os.path.join(root, "server") + "/"):
        continue
    args = shlex.split(entry["command"])[1:]
    # Keep defines, includes and the standard; drop output and optimisation flags.
    keep, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT"):
            skip = True
            continue
        if a in ("-c", "-MD") or a.startswith("-O") or a == path:
            continue
        keep.append(a)
    jobs.append((path, [clang, "-fsyntax-only", "-Wthread-safety", "-Wthread-safety-reference",
                        "-Werror=thread-safety", "-Wno-unknown-warning-option",
                        "-Wno-error=unused-command-line-argument", *keep, path], entry["directory"]))

def run(job):
    path, cmd, cwd = job
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return path, out.returncode, out.stderr

failed = 0
workers = max(1, min(2, os.cpu_count() or 1))
with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for path, rc, err in pool.map(run, sorted(jobs)):
        if rc != 0 or "thread-safety" in err:
            failed += 1
            print(err, end="")
print(f"check-thread-safety: {len(jobs)} files, {failed} with findings")
sys.exit(1 if failed else 0)
PY
