"""Shared pieces of the ONNX Runtime parity suite and the side-by-side benchmark.

Runs with Debian's interpreter (/usr/bin/python3: numpy, onnx; torch only in
the exporter subprocesses). Provides:
  - the model zoo: named exports, made on demand by the committed exporters and
    cached by content (exporter source + arguments + torch version) under
    models/.cache/zoo/ (git-ignored), so reruns cost nothing;
  - the committed default models (models/*/1/model.onnx), found by glob;
  - seeded random inputs for a model at a batch size;
  - rectifier-engine and ONNX Runtime (bench/peer/ort_run.js) runners;
  - ONNX Runtime held to AVX2 on CPUs with AVX-512 (RECTIFIER_ORT_ISA);
  - the parity measure: per output, max|engine - ort| / max(max|ort|, 1e-6);
  - the model's MACs per image from ONNX shape inference (Conv, Gemm, MatMul).
"""
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PYTHON = "/usr/bin/python3"
# Relative-error denominator floor: an all-zero reference output compares
# absolutely below this magnitude instead of dividing by zero.
REL_EPS = 1e-6


class ParityError(Exception):
    """A model could not be exported, run or compared (message names the cause)."""


def cache_dir():
    return os.environ.get("RECTIFIER_MODEL_CACHE", os.path.join(ROOT, "models", ".cache", "zoo"))


def _detector_exporter():
    """The models/tools detector exporter once committed, else tools/engine's."""
    for name in ("export_detector.py", "export_yolo.py", "export_yolo_like.py", "export_yolov8.py"):
        path = os.path.join(ROOT, "models", "tools", name)
        if os.path.exists(path):
            return path
    return os.path.join(ROOT, "tools", "engine", "export_yolo_like.py")


def _zoo_exporter():
    return os.path.join(ROOT, "models", "tools", "export_zoo.py")


# name -> (exporter path function, exporter arguments before --out, C,H,W)
def zoo_spec(name):
    """Zoo model names: resnet50, mobilenet_v2, mobilenet_v3_small, efficientnet_b0
    (224x224), the segmentation nets lraspp_mobilenet_v3_large and fcn_resnet50, the
    attention_net test model, yolo_like (640) and any of them with an _SIZE suffix
    (yolo_like_320). A _dyn suffix before the size (lraspp_mobilenet_v3_large_dyn,
    yolo_like_dyn_320) exports dynamic height and width; SIZE is then the export size."""
    base, size = name, None
    head, _, tail = name.rpartition("_")
    if head and tail.isdigit():
        base, size = head, int(tail)
    dynamic = base.endswith("_dyn")
    if dynamic:
        base = base[:-len("_dyn")]
    classifiers = ("resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
                   "lraspp_mobilenet_v3_large", "fcn_resnet50", "attention_net")
    if base in classifiers:
        size = size or 224
        return (_zoo_exporter(), [base, "--size", str(size)] + (["--dynamic-hw"] if dynamic else []),
                (3, size, size))
    if base == "yolo_like":
        size = size or 640
        if size % 32:
            raise ParityError(f"{name}: detector input size must be a multiple of 32")
        return (_detector_exporter(), ["--size", str(size)] + (["--dynamic"] if dynamic else []),
                (3, size, size))
    raise ParityError(f"unknown zoo model '{name}' (known: {', '.join(classifiers)}, yolo_like"
                      " and NAME_SIZE, NAME_dyn, NAME_dyn_SIZE variants)")


def _torch_version():
    # Read the version without importing torch (seconds): dpkg-installed dist-info.
    for path in glob.glob("/usr/lib/python3/dist-packages/torch-*.*-info"):
        return os.path.basename(path)
    return "torch-unknown"


def zoo_model(name, log=sys.stderr):
    """Path of the exported ONNX file for a zoo name, exporting it if not cached."""
    exporter, args, _ = zoo_spec(name)
    h = hashlib.sha256()
    with open(exporter, "rb") as f:
        h.update(f.read())
    h.update(json.dumps([os.path.basename(exporter), args, _torch_version()]).encode())
    path = os.path.join(cache_dir(), f"{name}-{h.hexdigest()[:16]}.onnx")
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir(), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=cache_dir())
    os.close(fd)
    try:
        print(f"exporting {name} with {os.path.relpath(exporter, ROOT)} {' '.join(args)}",
              file=log, flush=True)
        proc = subprocess.run([PYTHON, exporter] + args + ["--out", tmp], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise ParityError(f"export of {name} failed ({exporter}):\n{proc.stdout}")
        os.replace(tmp, path)  # atomic: concurrent tests never see a partial file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def default_models():
    """The committed default models: models/*/1/model.onnx, sorted."""
    return sorted(glob.glob(os.path.join(ROOT, "models", "*", "1", "model.onnx")))


_NP_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.UINT8: np.uint8,
}


def graph_inputs(model):
    """[(name, numpy dtype, dims with None for a symbolic/unknown dim)] of the real inputs."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        if tt.elem_type not in _NP_TYPES:
            raise ParityError(f"input {vi.name}: element type {tt.elem_type} not supported")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in tt.shape.dim]
        out.append((vi.name, _NP_TYPES[tt.elem_type], dims))
    return out


def supports_batch(model_path, batch):
    """True when every input's first dim is symbolic or equals batch."""
    model = onnx.load(model_path, load_external_data=False)
    return all(dims and (dims[0] is None or dims[0] == batch)
               for _, _, dims in graph_inputs(model))


def make_inputs(model_path, batch, seed, shape=None):
    """Seeded random inputs: standard normal floats, small non-negative integers.
    `shape` (a list of dims) replaces the single input's shape, for models with dynamic
    dimensions besides the batch; its first dim is then the batch."""
    model = onnx.load(model_path, load_external_data=False)
    rng = np.random.default_rng(seed)
    arrays = []
    inputs = graph_inputs(model)
    if shape is not None and len(inputs) != 1:
        raise ParityError(f"--shapes needs a model with one input, this one has {len(inputs)}")
    for name, dtype, dims in inputs:
        if not dims:
            raise ParityError(f"input {name} is a scalar; only batched tensors are supported")
        if shape is not None:
            if len(shape) != len(dims) or any(d is not None and d != s
                                               for d, s in zip(dims, shape)):
                raise ParityError(f"input {name}: shape {shape} does not fit its dims {dims}")
            full = list(shape)
        else:
            if dims[0] is not None and dims[0] != batch:
                raise ParityError(f"input {name} has a fixed batch of {dims[0]}, not {batch}")
            full = [batch] + dims[1:]
            if any(d is None for d in full):
                raise ParityError(f"input {name} has a dynamic non-batch dim: {dims} "
                                  "(give --shapes)")
        if np.issubdtype(dtype, np.floating):
            arrays.append(rng.standard_normal(full).astype(dtype))
        else:
            arrays.append(rng.integers(0, 4, size=full).astype(dtype))
    return [(n, a) for (n, _, _), a in zip(inputs, arrays)]


def write_pb(path, name, array):
    with open(path, "wb") as f:
        f.write(numpy_helper.from_array(array, name).SerializeToString())


def read_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def output_names(model_path):
    model = onnx.load(model_path, load_external_data=False)
    return [o.name for o in model.graph.output]


def run_engine(engine, model_path, inputs, workdir, threads=1, extra=()):
    """Runs rectifier-engine once on inputs [(name, array)]; returns output 0."""
    cmd = [engine, model_path, "-n", "0", "-w", "0", "-t", str(threads)]
    for i, (name, array) in enumerate(inputs):
        p = os.path.join(workdir, f"input{i}.pb")
        write_pb(p, name, array)
        cmd += ["-i", p]
    out = os.path.join(workdir, "engine_output0.pb")
    cmd += ["-o", out] + list(extra)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise ParityError(f"rectifier-engine failed on {model_path}:\n{proc.stdout}")
    return read_pb(out)


def peer_dir():
    return os.path.join(ROOT, "bench", "peer")


def check_peer():
    """Raises ParityError naming the fix when node or onnxruntime-node is missing."""
    lib = os.path.join(peer_dir(), "node_modules", "onnxruntime-node", "package.json")
    if not os.path.exists(lib):
        raise ParityError(f"{lib} is missing: run scripts/install-deps.sh "
                          "(npm install in bench/peer)")
    try:
        subprocess.run(["node", "--version"], check=True, stdout=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as e:
        raise ParityError(f"node is not runnable ({e}): run scripts/install-deps.sh") from e


# ONNX Runtime held to AVX2. MLAS picks its kernels from CPUID when the
# library loads and has no switch to cap them (oneDNN's is ONEDNN_MAX_CPU_ISA),
# so on a CPU with AVX-512 the side-by-side tools can run a private copy of the
# pinned build (package.json: onnxruntime-node 1.30.0) in which two CPU-feature
# checks report no AVX-512, loaded with LD_PRELOAD in place of the package's.
# Everything else in the library is unchanged: its AVX2 (FMA3) kernels are the
# ones it runs on a CPU without AVX-512.
ORT_LIBRARY = os.path.join("node_modules", "onnxruntime-node", "bin", "napi-v6", "linux", "x64",
                           "libonnxruntime.so.1")
ORT_LIBRARY_SHA256 = "ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23"
# (file offset, bytes there in the pinned build, bytes in the copy).
ORT_AVX2_PATCHES = [
    # MLAS_PLATFORM's constructor: `test $0x10000,%r10d` (CPUID 7 EBX bit 16,
    # AVX512F) then `je` past the AVX-512 kernels; the `je` becomes a `jmp`,
    # leaving the AVX2/FMA3 ones it has just chosen.
    (0x16abd14, "41f7c200000100740e", "41f7c200000100eb0e"),
    # CPUIDInfo (onnxruntime::CPUIDInfo::X86Init): `cmp $0xe6,%r14d` (XCR0
    # saves the AVX-512 state) then `je` to the code that sets its AVX-512
    # flags; the `je` becomes two `nop`s, so they stay false.
    (0x17eb4e8, "4181fee6000000746f", "4181fee60000009090"),
]
ORT_ISA_VARIABLE = "RECTIFIER_ORT_ISA"
_ort_avx2_made = {}  # source library -> its checked copy, made or verified by this process


def cpu_has_avx512():
    """True when /proc/cpuinfo lists avx512f."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def engine_capped_below_avx512(env=os.environ):
    """True when ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) holds oneDNN below
    AVX-512, and so the engine (its own kernels follow oneDNN's cap)."""
    cap = (env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "").upper()
    return cap != "" and not cap.startswith(("AVX512", "AVX10", "AMX", "ALL"))


def ort_held_to_avx2(env=os.environ):
    """Whether the tools run ONNX Runtime's AVX2-held copy: RECTIFIER_ORT_ISA
    is avx2, or unset while ONEDNN_MAX_CPU_ISA holds the engine below AVX-512
    (both runtimes at AVX2); native keeps the package's library. Only on a
    CPU with AVX-512: without it the package's library already runs AVX2."""
    isa = env.get(ORT_ISA_VARIABLE, "").strip().lower()
    if isa not in ("", "native", "avx2"):
        raise ParityError(f"{ORT_ISA_VARIABLE}={isa}: want avx2 or native")
    if isa == "":
        isa = "avx2" if engine_capped_below_avx512(env) else "native"
    return isa == "avx2" and cpu_has_avx512()


def ort_avx2_library(src=None, out_dir=None):
    """Path of the AVX2-held copy of ONNX Runtime's library, made on first use
    under models/.cache/ort-avx2/ from the installed package (or `src`) after
    checking it is the pinned build (its SHA-256 and the bytes at every
    patched offset)."""
    src = src or os.path.join(peer_dir(), ORT_LIBRARY)
    out_dir = out_dir or os.path.join(ROOT, "models", ".cache", "ort-avx2")
    out = os.path.join(out_dir, "libonnxruntime.so.1")
    if _ort_avx2_made.get(src) == out and os.path.exists(out):
        return out
    with open(src, "rb") as f:
        data = bytearray(f.read())
    if hashlib.sha256(data).hexdigest() != ORT_LIBRARY_SHA256:
        raise ParityError(f"{src} is not the pinned ONNX Runtime 1.30.0 build (SHA-256 differs): "
                          f"cannot hold it to AVX2; unset {ORT_ISA_VARIABLE} or set it to native")
    for offset, old, new in ORT_AVX2_PATCHES:
        old, new = bytes.fromhex(old), bytes.fromhex(new)
        if data[offset:offset + len(old)] != old:
            raise ParityError(f"{src}: unexpected bytes at {offset:#x}, not holding it to AVX2")
        data[offset:offset + len(new)] = new
    if os.path.exists(out):
        with open(out, "rb") as f:
            if f.read() == data:
                _ort_avx2_made[src] = out
                return out
    os.makedirs(out_dir, exist_ok=True)
    tmp = f"{out}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    _ort_avx2_made[src] = out
    return out


def ort_env(env=None):
    """(environment for a node process running ONNX Runtime, the library it
    must load or None): LD_PRELOAD names the AVX2-held copy when
    ort_held_to_avx2()."""
    env = dict(os.environ if env is None else env)
    if not ort_held_to_avx2(env):
        return env, None
    lib = ort_avx2_library()
    env["LD_PRELOAD"] = " ".join(x for x in (lib, env.get("LD_PRELOAD", "")) if x)
    return env, lib


def check_ort_library(info, expected, what):
    """Raises ParityError unless ort_bench.js's JSON line `info` names the
    library `expected` (None: the package's own) as the one it loaded."""
    got = info.get("library")
    want = os.path.realpath(expected or os.path.join(peer_dir(), ORT_LIBRARY))
    if not got or os.path.realpath(got) != want:
        raise ParityError(f"{what}: ONNX Runtime loaded {got or 'an unknown library'}, "
                          f"expected {want}")


def ort_bench(model, args, *, env=None):
    """Runs bench/peer/ort_bench.js MODEL ARGS (held to AVX2 when
    ort_held_to_avx2(env)) and returns its JSON line, after checking that it
    loaded the library it was meant to."""
    env, lib = ort_env(env)
    proc = subprocess.run(["node", os.path.join(peer_dir(), "ort_bench.js"), model, *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise ParityError(f"ort_bench.js {' '.join(args)} failed on {model}:\n{proc.stderr}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    check_ort_library(info, lib, f"ort_bench.js on {os.path.basename(model)}")
    return info


def run_ort(model_path, cases, threads=1):
    """Runs ONNX Runtime on each case [(workdir, inputs)]; returns [list of outputs]."""
    for workdir, inputs in cases:
        for i, (_, array) in enumerate(inputs):
            np.save(os.path.join(workdir, f"input{i}.npy"), array)
    cmd = ["node", os.path.join(peer_dir(), "ort_run.js"), model_path, "--threads", str(threads)]
    cmd += [w for w, _ in cases]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise ParityError(f"ONNX Runtime failed on {model_path}:\n{proc.stderr}")
    results = []
    for line in proc.stdout.splitlines():
        info = json.loads(line)
        results.append([np.load(o["file"]) for o in info["outputs"]])
    if len(results) != len(cases):
        raise ParityError(f"ort_run.js answered {len(results)} of {len(cases)} cases")
    return results


def compare(got, want):
    """Parity of one output: dict(shape_ok, max_abs, rel, top1, rel_channel, detail) with
    rel = max|got - want| / max(max|want|, REL_EPS) over the whole output and, for
    outputs of rank >= 3, rel_channel = the same per channel (axis 1), worst channel.
    NaN/inf anywhere or a shape mismatch gives rel = inf."""
    if got.shape != want.shape:
        return {"shape_ok": False, "max_abs": float("inf"), "rel": float("inf"), "top1": None,
                "rel_channel": None, "detail": f"shape {list(got.shape)} vs ORT {list(want.shape)}"}
    g, w = got.astype(np.float64), want.astype(np.float64)
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(w))):
        return {"shape_ok": True, "max_abs": float("inf"), "rel": float("inf"), "top1": None,
                "rel_channel": None, "detail": "non-finite values"}
    max_abs = float(np.max(np.abs(g - w))) if g.size else 0.0
    scale = max(float(np.max(np.abs(w))) if w.size else 0.0, REL_EPS)
    top1 = None
    if g.ndim == 2 and g.shape[1] > 1:  # classifier logits [batch, classes]
        top1 = float(np.mean(g.argmax(1) == w.argmax(1)))
    rel_channel = None
    if g.ndim >= 3 and g.size:
        # Channels of different scales (a detector's [b, 4 + classes, anchors]: box
        # pixels and sigmoid scores): the same measure per channel, worst channel.
        axes = tuple(i for i in range(g.ndim) if i != 1)
        err_c = np.max(np.abs(g - w), axis=axes)
        scale_c = np.maximum(np.max(np.abs(w), axis=axes), REL_EPS)
        rel_channel = float(np.max(err_c / scale_c))
    return {"shape_ok": True, "max_abs": max_abs, "rel": max_abs / scale, "top1": top1,
            "rel_channel": rel_channel, "detail": ""}


_MAC_OPS = ("Conv", "Gemm", "MatMul")


def _ort_dims(model, names):
    """Dims of the named tensors at batch 1, from an ONNX Runtime run of a copy of
    the model that lists them as outputs (for shapes ONNX shape inference cannot
    follow, e.g. torch's chunk exported as Shape/Gather/Slice arithmetic)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for n in names:
        if n not in known:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    with tempfile.TemporaryDirectory(prefix="zoo_dims_") as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(m, path)
        case = os.path.join(tmp, "case")
        os.makedirs(case)
        for i, (_, array) in enumerate(make_inputs(path, 1, 0)):
            np.save(os.path.join(case, f"input{i}.npy"), array)
        proc = subprocess.run(["node", os.path.join(peer_dir(), "ort_run.js"), path,
                               "--dims-only", case], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise ParityError(f"ONNX Runtime could not report shapes:\n{proc.stderr}")
        outs = json.loads(proc.stdout.splitlines()[-1])["outputs"]
    return {o["name"]: o["dims"] for o in outs}


def macs_per_image(model_path):
    """Multiply-accumulates of Conv, Gemm and MatMul for batch 1, from ONNX shape
    inference (the input's batch dim pinned to 1); where that cannot infer a
    shape, the dims come from one ONNX Runtime run at batch 1."""
    model = onnx.load(model_path, load_external_data=False)
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            dims[0].Clear()
            dims[0].dim_value = 1
    inferred = shape_inference.infer_shapes(model)
    shapes = dict(inits)
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + \
            list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = [d.dim_value for d in tt.shape.dim]
    needed = [t for n in inferred.graph.node if n.op_type in _MAC_OPS
              for t in (n.output[0], n.input[0], n.input[1]) if t not in shapes]
    if needed:
        shapes.update(_ort_dims(model, sorted(set(needed))))
    total = 0
    for node in inferred.graph.node:
        if node.op_type not in _MAC_OPS:
            continue
        out = shapes.get(node.output[0])
        if out is None:
            raise ParityError(f"{model_path}: no shape for {node.op_type} "
                              f"{node.name or node.output[0]}")
        if node.op_type == "Conv":
            w = shapes[node.input[1]]  # [Cout, Cin/group, kh, kw]
            total += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type == "Gemm":
            a = shapes[node.input[0]]
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            total += int(np.prod(out)) * (a[0] if trans_a else a[-1])
        else:
            a = shapes[node.input[0]]
            total += int(np.prod(out)) * a[-1]
    return total
