#!/usr/bin/python3
"""OpenMP waiting policy of the binaries (ctest engine_openmp_env).

rectifier-engine and rectifier-server re-execute themselves once so that
libgomp loads with GOMP_SPINCOUNT=10000 and OMP_WAIT_POLICY=ACTIVE
(server/common/process_env.h), unless the caller set either variable, in
which case both stay as given. rectifier-engine prints the two values it
runs with; this test runs it on the default detector with a clean
environment and with each variable set by the caller.

usage: openmp_env_test.py path/to/rectifier-engine
"""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "models", "road_detector", "1", "model.onnx")


def policy(engine, extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(extra)
    out = subprocess.run([engine, MODEL, "-b", "1", "-t", "1", "-n", "1", "-w", "0"], env=env,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        sys.exit(f"rectifier-engine failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    m = re.search(r"OMP_WAIT_POLICY=([^,]+), GOMP_SPINCOUNT=([^)]+)\)", out.stdout)
    if not m:
        sys.exit(f"no OpenMP line in:\n{out.stdout}")
    return m.group(1), m.group(2)


def main():
    engine = sys.argv[1]
    cases = [
        ({}, ("ACTIVE", "10000")),
        ({"GOMP_SPINCOUNT": "500"}, ("unset", "500")),
        ({"OMP_WAIT_POLICY": "PASSIVE"}, ("PASSIVE", "unset")),
    ]
    failed = False
    for extra, want in cases:
        got = policy(engine, extra)
        print(f"caller {extra or 'nothing'}: runs with OMP_WAIT_POLICY={got[0]}, "
              f"GOMP_SPINCOUNT={got[1]} (want {want[0]}, {want[1]})")
        failed |= got != want
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
