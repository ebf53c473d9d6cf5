// ONNX Runtime (CPU EP) as the parity reference: runs a model on inputs read
// from .npy files and writes every output as .npy. One session serves several
// cases, so a model is loaded once for all its batch sizes.
//   node ort_run.js MODEL.onnx [--threads T] [--dims-only] CASE_DIR...
// Each CASE_DIR holds input0.npy, input1.npy, ... (one per graph input, in the
// graph's order). Writes CASE_DIR/ort_output0.npy, ... and prints one JSON line
// per case: {"case", "outputs": [{"name", "dims", "file"}]}. --dims-only writes
// no files (tools/parity/zoo.py asks for the dims of intermediate tensors).
// Exit status 1 with a message on any error (bad file, wrong shape, ORT error).
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

// numpy dtype descr <-> onnxruntime-node tensor type and typed array.
const DTYPES = {
  '<f4': ['float32', Float32Array],
  '<f8': ['float64', Float64Array],
  '<i8': ['int64', BigInt64Array],
  '<i4': ['int32', Int32Array],
  '|u1': ['uint8', Uint8Array],
  '|i1': ['int8', Int8Array],
  '|b1': ['bool', Uint8Array],
};

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY') {
    throw new Error(`${file}: not a .npy file`);
  }
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const headerStart = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', headerStart, headerStart + headerLen);
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) throw new Error(`${file}: unreadable .npy header ${header}`);
  if (fortran[1] === 'True') throw new Error(`${file}: Fortran-order arrays are not supported`);
  const type = DTYPES[descr[1]];
  if (!type) throw new Error(`${file}: dtype ${descr[1]} is not supported`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  const offset = headerStart + headerLen;
  const bytes = buf.length - offset;
  if (bytes !== count * type[1].BYTES_PER_ELEMENT) {
    throw new Error(`${file}: ${bytes} data bytes for shape [${dims}] of ${descr[1]}`);
  }
  // Copy into an aligned buffer (the file buffer's offset may not be aligned).
  const data = new type[1](count);
  new Uint8Array(data.buffer).set(buf.subarray(offset));
  return new ort.Tensor(type[0], data, dims);
}

function writeNpy(file, tensor) {
  const entry = Object.entries(DTYPES).find(([, t]) => t[0] === tensor.type);
  if (!entry) throw new Error(`output type ${tensor.type} cannot be written as .npy`);
  const shape = tensor.dims.length === 1 ? `(${tensor.dims[0]},)` : `(${tensor.dims.join(', ')})`;
  let header = `{'descr': '${entry[0]}', 'fortran_order': False, 'shape': ${shape}, }`;
  // Magic (6) + version (2) + length (2) + header + '\n', padded to 64 bytes.
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const data = tensor.data;
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'),
    Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

async function main() {
  const argv = process.argv.slice(2);
  let threads = 1;
  let dimsOnly = false;
  const cases = [];
  let model = null;
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i] === '--threads') threads = parseInt(argv[++i], 10);
    else if (argv[i] === '--dims-only') dimsOnly = true;
    else if (argv[i].startsWith('--')) throw new Error(`unknown flag ${argv[i]}`);
    else if (model === null) model = argv[i];
    else cases.push(argv[i]);
  }
  if (model === null || cases.length === 0) {
    throw new Error('usage: node ort_run.js MODEL.onnx [--threads T] CASE_DIR...');
  }
  if (!(threads >= 1)) throw new Error('--threads must be >= 1');
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  for (const dir of cases) {
    const feeds = {};
    session.inputNames.forEach((name, i) => {
      feeds[name] = readNpy(path.join(dir, `input${i}.npy`));
    });
    const result = await session.run(feeds);
    const outputs = session.outputNames.map((name, i) => {
      if (dimsOnly) return {name, dims: result[name].dims};
      const file = path.join(dir, `ort_output${i}.npy`);
      writeNpy(file, result[name]);
      return {name, dims: result[name].dims, file};
    });
    console.log(JSON.stringify({case: dir, outputs}));
  }
}

main().catch((e) => {
  console.error(`ort_run: ${e.message}`);
  process.exit(1);
});
