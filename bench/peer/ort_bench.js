// ONNX Runtime (CPU EP) timing and output dump, the peer for Rectifier's
// engine. Usage:
//   node ort_bench.js MODEL.onnx --batch B --threads T --iters N [--input X.bin] [--output-dir D]
//        [--profile PREFIX]
// --profile writes ONNX Runtime's per-node profile (enableProfiling) of the
// warm-up and timed runs to PREFIX_<time>.json and names it in the JSON line.
// Input: raw little-endian float32 for the first graph input (random with a
// fixed seed when --input is absent); every other input dim must be static.
// Prints one JSON line: {"model", "batch", "threads", "median_ms", "p90_ms", "runs", "profile",
// "library" (the libonnxruntime file this process loaded), "outputs": {...}}.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

function parseArgs(argv) {
  const args = {batch: 1, threads: 2, iters: 20, warmup: 3, input: null, outputDir: null, shape: null,
                profile: null};
  args.model = argv[0];
  for (let i = 1; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    if (key === 'batch') args.batch = parseInt(value, 10);
    else if (key === 'threads') args.threads = parseInt(value, 10);
    else if (key === 'iters') args.iters = parseInt(value, 10);
    else if (key === 'warmup') args.warmup = parseInt(value, 10);
    else if (key === 'input') args.input = value;
    else if (key === 'output-dir') args.outputDir = value;
    else if (key === 'shape') args.shape = value.split(',').map(Number);
    else if (key === 'profile') args.profile = value;
    else throw new Error(`unknown flag --${key}`);
  }
  return args;
}

// xorshift32: reproducible inputs without extra packages.
function randomFloats(n, seed) {
  const out = new Float32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; ++i) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = (x / 4294967296) * 2 - 1;
  }
  return out;
}

// The ONNX Runtime library this process mapped (Linux): the tools check it
// when they hold ONNX Runtime to AVX2 with an LD_PRELOADed copy.
function loadedLibrary() {
  try {
    const line = fs.readFileSync('/proc/self/maps', 'utf8').split('\n')
        .find((l) => /\/libonnxruntime\.so[.0-9]*$/.test(l));
    return line ? line.slice(line.indexOf('/')) : null;
  } catch (e) {
    return null;
  }
}

function newestProfile(dir, base) {
  const files = fs.readdirSync(dir).filter((f) => f.startsWith(base) && f.endsWith('.json'))
      .map((f) => path.join(dir, f));
  files.sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  return files[0];
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const session = await ort.InferenceSession.create(args.model, {
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    ...(args.profile ? {enableProfiling: true, profileFilePrefix: args.profile} : {}),
  });
  const name = session.inputNames[0];
  let shape = args.shape;
  if (!shape) throw new Error('--shape C,H,W... (without batch) is required');
  shape = [args.batch, ...shape];
  const count = shape.reduce((a, b) => a * b, 1);
  let data;
  if (args.input) {
    const buf = fs.readFileSync(args.input);
    data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    if (data.length !== count) throw new Error(`input holds ${data.length} floats, need ${count}`);
  } else {
    data = randomFloats(count, 1234);
  }
  const feeds = {[name]: new ort.Tensor('float32', data, shape)};
  let result;
  for (let i = 0; i < args.warmup; ++i) result = await session.run(feeds);
  const times = [];
  for (let i = 0; i < args.iters; ++i) {
    const t0 = process.hrtime.bigint();
    result = await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  const outputs = {};
  for (const out of session.outputNames) {
    outputs[out] = result[out].dims;
    if (args.outputDir) {
      const t = result[out].data;
      fs.writeFileSync(path.join(args.outputDir, `${out.replace(/[^A-Za-z0-9_.-]/g, '_')}.bin`),
                       Buffer.from(t.buffer, t.byteOffset, t.byteLength));
    }
  }
  let profileFile = null;
  if (args.profile) {
    // endProfiling returns the file's name.
    profileFile = path.resolve(session.endProfiling() ||
                               newestProfile(path.dirname(path.resolve(args.profile)),
                                             path.basename(args.profile)));
  }
  console.log(JSON.stringify({
    model: path.basename(args.model), batch: args.batch, threads: args.threads,
    median_ms: times[Math.floor(times.length / 2)], p90_ms: times[Math.floor(times.length * 0.9)],
    runs: args.warmup + args.iters, profile: profileFile, library: loadedLibrary(), outputs,
  }));
}

main().catch((e) => { console.error(`ort_bench: ${e.message}`); process.exit(1); });
