#!/usr/bin/python3
"""Parity of rectifier-engine with ONNX Runtime 1.30 on whole models.

For each model and batch size: the same seeded random input goes through
`rectifier-engine` and ONNX Runtime (node bench/peer/ort_run.js); every output
the engine writes (output 0) is compared with
    rel = max|engine - ort| / max(max|ort|, 1e-6)
and the run fails when rel > --rtol (default 1e-4), a shape differs, or a
value is not finite.

  tools/parity/ort_parity.py --engine build/tools/engine/rectifier-engine \\
      --zoo mobilenet_v3_small yolo_like_320 --batches 1 3
  tools/parity/ort_parity.py --engine ... --default-models   # models/*/1/model.onnx
  tools/parity/ort_parity.py --engine ... --model path/to/model.onnx
  tools/parity/ort_parity.py --engine ... --zoo lraspp_mobilenet_v3_large \\
      --shapes 1x3x160x224 2x3x96x128 1x3x224x160   # dynamic height and width

Zoo models are exported on demand into models/.cache/zoo/ (content-cached);
see tools/parity/zoo.py. Exit status: 0 all within tolerance, 1 a parity
failure or error, 77 nothing to test (--default-models with none committed).
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zoo  # noqa: E402

SKIP = 77


# Default models with dynamic height and width: the shapes --default-models
# checks them at (each a full input shape).
DEFAULT_MODEL_SHAPES = {
    "scan_segmenter": [[1, 1, 128, 128], [3, 1, 96, 160], [1, 1, 192, 144]],
}


def check_model(engine, name, path, batches, threads, rtol, seed, perturb, shapes=None):
    """Returns a list of (line, ok) for one model over the batch sizes, or over `shapes`
    (full input shapes, for a model with dynamic dimensions besides the batch)."""
    lines = []
    names = zoo.output_names(path)
    cases = []
    with tempfile.TemporaryDirectory(prefix="ort_parity_") as tmp:
        for i, spec in enumerate(shapes or batches):
            batch = spec[0] if shapes else spec
            label = "x".join(map(str, spec)) if shapes else str(batch)
            if not shapes and not zoo.supports_batch(path, batch):
                lines.append((f"{name} batch {batch}: skipped, the model's batch is fixed", True))
                continue
            workdir = os.path.join(tmp, f"case{i}")
            os.makedirs(workdir)
            inputs = zoo.make_inputs(path, batch, seed + batch + i * 1000 * bool(shapes),
                                     spec if shapes else None)
            extra = ("--shape", label) if shapes else ()
            cases.append((label, workdir, inputs, extra))
        if not cases:
            return lines
        t0 = time.monotonic()
        engine_out = [zoo.run_engine(engine, path, inputs, w, threads, extra)
                      for _, w, inputs, extra in cases]
        t1 = time.monotonic()
        ort_out = zoo.run_ort(path, [(w, inputs) for _, w, inputs, _ in cases], threads)
        t2 = time.monotonic()
        for (batch, _, _, _), got, want in zip(cases, engine_out, ort_out):
            if perturb:
                # Self-check of the comparison (tests/parity): one engine value moved by
                # PERTURB x the output's scale must fail when PERTURB > rtol.
                got = got.copy()
                got.flat[0] += perturb * max(float(abs(want[0]).max()), zoo.REL_EPS)
            r = zoo.compare(got, want[0])
            ok = r["shape_ok"] and r["rel"] <= rtol and (r["rel_channel"] or 0.0) <= rtol
            top1 = f", top-1 agree {r['top1']:.2f}" if r["top1"] is not None else ""
            if r["rel_channel"] is not None:
                top1 += f", worst channel rel {r['rel_channel']:.3g}"
            unchecked = f" ({len(names) - 1} further outputs not written by the engine)" \
                if len(names) > 1 else ""
            lines.append((
                f"{name} {'input ' if shapes else 'batch '}{batch} {names[0]} {list(got.shape)}: max abs {r['max_abs']:.3g}, "
                f"rel {r['rel']:.3g} (tol {rtol:g}){top1}{unchecked} {r['detail']}"
                f"{'OK' if ok else 'FAIL'}", ok))
        lines.append((f"{name}: engine {t1 - t0:.1f} s, onnxruntime {t2 - t1:.1f} s", True))
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", required=True, help="rectifier-engine binary")
    p.add_argument("--zoo", nargs="*", default=[], help="zoo names (tools/parity/zoo.py)")
    p.add_argument("--model", nargs="*", default=[], help="ONNX files")
    p.add_argument("--default-models", action="store_true", help="models/*/1/model.onnx")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 3])
    p.add_argument("--shapes", nargs="+", default=None,
                   help="full input shapes (1x3x160x224 ...) instead of --batches, for models "
                        "with dynamic height/width; one case per shape")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--perturb", type=float, default=0.0,
                   help="add PERTURB x max|output| to one engine value (proves a failure fails)")
    a = p.parse_args()

    shapes = None
    if a.shapes:
        try:
            shapes = [[int(d) for d in s.split("x")] for s in a.shapes]
        except ValueError:
            p.error(f"--shapes: expected dims like 1x3x160x224, got {a.shapes}")
    try:
        zoo.check_peer()
        models = [(n, zoo.zoo_model(n)) for n in a.zoo]
        models += [(os.path.relpath(m, zoo.ROOT), m) for m in a.model]
        if a.default_models:
            found = zoo.default_models()
            if not found and not models:
                print("no default models (models/*/1/model.onnx) committed yet: skipped")
                return SKIP
            models += [(os.path.relpath(m, zoo.ROOT), m) for m in found]
        if not models:
            p.error("nothing to check: give --zoo, --model or --default-models")
        failed = 0
        for name, path in models:
            model_shapes = shapes or DEFAULT_MODEL_SHAPES.get(path.split(os.sep)[-3])
            for line, ok in check_model(a.engine, name, path, a.batches, a.threads, a.rtol,
                                        a.seed, a.perturb, model_shapes):
                print(line, flush=True)
                failed += not ok
    except zoo.ParityError as e:
        print(f"ort_parity: {e}", file=sys.stderr)
        return 1
    print(f"{'FAILED' if failed else 'passed'}: {len(models)} model(s), {failed} failure(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
