#!/usr/bin/python3
"""models/README.md's walkthrough ("Serving your own classifier"), run as written.

Takes the walkthrough's fenced shell block from models/README.md and runs its
commands in a temporary folder, with three changes only a test needs: the
binaries are the build's (--server, --client), the server listens on free
loopback ports, and the client is pointed at it with --json. Then checks:

- the classify answer has five classes, each label from the exported
  labels.txt, probabilities falling;
- parity with PyTorch: a single-colour image (every resize and crop agrees on
  it) classified by the server gives top-5 labels among PyTorch's top 8, each
  with PyTorch's probability within 0.1% relative: the softmax of the PyTorch
  model on that colour normalised with ImageNet's mean and std (RGB).

  /usr/bin/python3 tests/models/walkthrough_test.py --server S --client C
"""
import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
COLOUR = (200, 120, 40)  # RGB


def walkthrough_commands():
    """The shell commands of the walkthrough block, continuation lines joined."""
    with open(os.path.join(ROOT, "models", "README.md")) as f:
        text = f.read()
    section = text.split("## Serving your own classifier", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    commands, current = [], ""
    for line in block.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            commands.append(current.strip())
            current = ""
    return commands


def fail(message):
    print(f"walkthrough_test: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True)
    p.add_argument("--client", required=True)
    a = p.parse_args()
    a.server, a.client = os.path.abspath(a.server), os.path.abspath(a.client)
    work = tempfile.mkdtemp(prefix="rectifier-walkthrough-")
    server = log = None
    port = None
    try:
        answers = []
        for command in walkthrough_commands():
            args = shlex.split(command.rstrip("&").strip())
            args = [os.path.join(ROOT, x) if x.startswith("models/") else x for x in args]
            if args[0] == "build/server/rectifier-server":
                log = open(os.path.join(work, "server.log"), "w+")
                server = subprocess.Popen(
                    [a.server] + args[1:] + ["--grpc-address", "127.0.0.1:0",
                                             "--http-address", "", "--metrics-address", ""],
                    cwd=work, stdout=log, stderr=subprocess.STDOUT)
                deadline = time.time() + 120
                while port is None and time.time() < deadline and server.poll() is None:
                    time.sleep(0.1)
                    log.seek(0)
                    m = re.search(r"serving gRPC on port (\d+)", log.read())
                    port = m and m.group(1)
                if port is None:
                    log.seek(0)
                    fail(f"the server did not start:\n{log.read()[-3000:]}")
                continue
            if args[0] == "build/tools/client/rectifier-client":
                args = [a.client, "--url", f"127.0.0.1:{port}", "--json"] + args[1:]
            print("$", command, flush=True)
            done = subprocess.run(args, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=600)
            if done.returncode != 0:
                fail(f"'{command}' exited {done.returncode}:\n{done.stdout[-3000:]}")
            if args[0] == a.client:
                answers.append(done.stdout)
        if not answers:
            fail("the walkthrough has no rectifier-client command")
        labels_path = os.path.join(work, "my_models", "imagenet_classifier", "labels.txt")
        with open(labels_path) as f:
            labels = f.read().splitlines()
        classes = json.loads(answers[-1].strip().splitlines()[-1])["results"][0]["classes"]
        scores = [c["score"] for c in classes]
        if len(classes) != 5 or any(c["label"] not in labels for c in classes) or \
                scores != sorted(scores, reverse=True):
            fail(f"classify answered {classes}")
        print(f"classify: {[(c['label'], round(c['score'], 4)) for c in classes]}")

        # Parity with PyTorch on a single-colour image.
        from PIL import Image
        image = os.path.join(work, "colour.png")
        Image.new("RGB", (300, 200), COLOUR).save(image)
        done = subprocess.run([a.client, "--url", f"127.0.0.1:{port}", "--json", "classify",
                               "imagenet_classifier", image], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=120)
        if done.returncode != 0:
            fail(f"classify of the colour image exited {done.returncode}: {done.stdout}")
        got = json.loads(done.stdout.strip().splitlines()[-1])["results"][0]["classes"]

        import torch
        sys.path.insert(0, os.path.join(ROOT, "models", "tools"))
        import export_zoo
        model = export_zoo.build("resnet50")
        x = torch.empty(1, 3, 224, 224)
        for c in range(3):
            x[0, c] = (COLOUR[c] / 255.0 - MEAN[c]) / STD[c]
        with torch.no_grad():
            probabilities = torch.softmax(model(x)[0], 0)
        top = torch.topk(probabilities, 8)
        want = [(labels[i], float(p)) for p, i in zip(top.values, top.indices)]
        print(f"server:  {[(c['label'], round(c['score'], 7)) for c in got]}")
        print(f"PyTorch: {[(l, round(p, 7)) for l, p in want]}")
        # Random weights give near-uniform probabilities, whose order can
        # swap on a last-bit difference: every label the server names must be
        # among PyTorch's top 8, with PyTorch's probability for it.
        for c in got:
            p = float(probabilities[labels.index(c["label"])])
            if c["label"] not in [label for label, _ in want] or abs(c["score"] - p) > 1e-3 * p:
                fail(f"server {c} against PyTorch's {p} for it (top 8: {want})")
        print("walkthrough_test: OK")
        return 0
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
        if log is not None:
            log.close()
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    sys.exit(main())
