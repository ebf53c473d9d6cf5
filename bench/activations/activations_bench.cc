// Activation costs, straight on oneDNN (the primitives the engine lowers
// each catalog activation to) plus Rectifier's own AVX2 tanh/GELU-tanh and
// its SiLU (SiluFast, the engine's default SiLU step):
//  (a) BM_Standalone/<act>: one activation over a 1x256x56x56 f32 nChw8c
//      tensor, out of place, next to BM_Copy/*: a plain copy of the same
//      bytes (memcpy over the threads: the memory-bandwidth limit for a
//      read + write pass; oneDNN's same-layout reorder is shown too);
//  (b) BM_ConvFused/<act> vs BM_ConvBare: a 3x3 conv 64->64 on 56x56
//      (batch 1) with the activation as a post-op, vs the conv alone;
//  (c) BM_ConvUnfused/<act>: the conv, then the activation as its own
//      primitive (oneDNN eltwise / prelu, or Rectifier's kernel in place).
// Items are output elements (Gelem/s = items_per_second / 1e9).
// bench/activations/table.py turns the JSON output into the table in
// docs/ACTIVATIONS.md. Threads: OMP_NUM_THREADS (oneDNN and our kernel).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "server/engine/ops/depthwise.h"
#include "server/engine/ops/fast_activations.h"

namespace {

using dnnl::algorithm;
using dnnl::memory;
using Tag = memory::format_tag;
using DT = memory::data_type;
using rectifier::engine::FastActivation;

struct Step {
  algorithm alg;
  float alpha = 0.0f;
  float beta = 0.0f;
};

// One catalog activation as the engine lowers it: a chain of oneDNN
// eltwise steps, a PReLU (per-channel slope), or Rectifier's kernel.
struct Activation {
  std::string name;
  std::vector<Step> chain;
  bool prelu = false;
  bool rectifier = false;
  FastActivation fast = FastActivation::kTanh;
  bool force_avx2 = false;  // the AVX2 kernel even where AVX-512 is available
  bool silu_fast = false;   // SiluFast (ops/depthwise.h) instead of `fast`
};

const std::vector<Activation>& Catalog() {
  static const std::vector<Activation> catalog = {
      {"ReLU", {{algorithm::eltwise_relu}}},
      {"LeakyReLU", {{algorithm::eltwise_relu, 0.01f}}},
      {"PReLU", {}, true},
      {"ReLU6", {{algorithm::eltwise_clip_v2, 0.0f, 6.0f}}},
      {"Sigmoid", {{algorithm::eltwise_logistic}}},
      {"Tanh", {{algorithm::eltwise_tanh}}},
      // oneDNN 2.6 has no hardsigmoid: linear then clip, as the engine does.
      {"HardSigmoid",
       {{algorithm::eltwise_linear, 0.2f, 0.5f}, {algorithm::eltwise_clip_v2, 0, 1}}},
      {"HardSwish", {{algorithm::eltwise_hardswish}}},
      {"ELU", {{algorithm::eltwise_elu, 1.0f}}},
      {"SELU", {{algorithm::eltwise_elu, 1.6732632f}, {algorithm::eltwise_linear, 1.0507010f}}},
      {"Softplus", {{algorithm::eltwise_soft_relu}}},
      {"Mish", {{algorithm::eltwise_mish}}},
      {"SiLU", {{algorithm::eltwise_swish, 1.0f}}},
      {"Swish(1.5)", {{algorithm::eltwise_swish, 1.5f}}},
      {"GELU-erf", {{algorithm::eltwise_gelu_erf}}},
      {"GELU-tanh", {{algorithm::eltwise_gelu_tanh}}},
      {"Rectifier-Tanh", {}, false, true, FastActivation::kTanh},
      {"Rectifier-GELU-tanh", {}, false, true, FastActivation::kGeluTanh},
      {"Rectifier-Tanh-avx2", {}, false, true, FastActivation::kTanh, true},
      {"Rectifier-GELU-tanh-avx2", {}, false, true, FastActivation::kGeluTanh, true},
      {"Rectifier-SiLU", {}, false, true, FastActivation::kTanh, false, true},
  };
  return catalog;
}

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

void Fill(const memory& m, float lo, float hi, uint32_t seed) {
  auto* p = static_cast<float*>(m.get_data_handle());
  const size_t n = m.get_desc().get_size() / sizeof(float);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (size_t i = 0; i < n; ++i) p[i] = dist(rng);
}

using Args = std::unordered_map<int, memory>;
struct Exec {
  dnnl::primitive prim;
  Args args;
};

// The activation `act` from `src` into `dst` (same md) as primitives; a
// chain runs its later steps in place on dst. Empty for Rectifier kernels.
std::vector<Exec> ActivationPrims(const Activation& act, const memory& src, const memory& dst) {
  std::vector<Exec> out;
  const memory::desc md = src.get_desc();
  if (act.prelu) {
    const memory::desc wei_any({1, md.dims()[1], 1, 1}, DT::f32, Tag::any);
    dnnl::prelu_forward::primitive_desc pd(
        dnnl::prelu_forward::desc(dnnl::prop_kind::forward_inference, md, wei_any), Engine());
    memory slope(pd.weights_desc(), Engine());
    Fill(slope, 0.0f, 0.5f, 11);
    out.push_back({dnnl::prelu_forward(pd),
                   {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, slope}, {DNNL_ARG_DST, dst}}});
    return out;
  }
  for (size_t i = 0; i < act.chain.size(); ++i) {
    const Step& s = act.chain[i];
    dnnl::eltwise_forward::primitive_desc pd(
        dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_inference, s.alg, md, s.alpha, s.beta),
        Engine());
    out.push_back(
        {dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, i == 0 ? src : dst}, {DNNL_ARG_DST, dst}}});
  }
  return out;
}

// Rectifier's kernel over the OpenMP threads, as the engine runs it.
void RunRectifier(const Activation& act, const float* x, float* y, int64_t n) {
  if (act.silu_fast) {
    rectifier::engine::SiluFastParallel(x, y, n);
    return;
  }
  if (!act.force_avx2) {
    rectifier::engine::ApplyFastActivationParallel(act.fast, x, y, n);
    return;
  }
  constexpr int64_t kChunk = 16 * 1024;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    rectifier::engine::ApplyFastActivationAvx2(act.fast, x + c * kChunk, y + c * kChunk,
                                               std::min(kChunk, n - c * kChunk));
  }
}

int64_t Elements(const memory& m) {
  return static_cast<int64_t>(m.get_desc().get_size() / sizeof(float));
}

// ---- (a) standalone ------------------------------------------------------------

const memory::desc& BigMd() {
  static const memory::desc md({1, 256, 56, 56}, DT::f32, Tag::nChw8c);
  return md;
}

void BM_Standalone(benchmark::State& state, const Activation& act) {
  if (act.force_avx2 && !rectifier::engine::FastActivationsVectorized()) {
    state.SkipWithError("no AVX2+FMA");
    return;
  }
  memory src(BigMd(), Engine()), dst(BigMd(), Engine());
  Fill(src, -6.0f, 6.0f, 1);
  Fill(dst, 0.0f, 1.0f, 2);
  dnnl::stream stream(Engine());
  const std::vector<Exec> prims = ActivationPrims(act, src, dst);
  const int64_t n = Elements(src);
  for (auto _ : state) {
    if (act.rectifier) {
      RunRectifier(act, static_cast<const float*>(src.get_data_handle()),
                   static_cast<float*>(dst.get_data_handle()), n);
    } else {
      for (const Exec& e : prims) e.prim.execute(stream, e.args);
      stream.wait();
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * 2 * static_cast<int64_t>(sizeof(float)));
}

// The memory-bandwidth reference: the same bytes copied by oneDNN's reorder
// (nChw8c -> nChw8c) and by memcpy split over the OpenMP threads.
void BM_CopyReorder(benchmark::State& state) {
  memory src(BigMd(), Engine()), dst(BigMd(), Engine());
  Fill(src, -6.0f, 6.0f, 1);
  dnnl::stream stream(Engine());
  dnnl::reorder::primitive_desc pd(Engine(), BigMd(), Engine(), BigMd());
  dnnl::reorder copy(pd);
  state.SetLabel(pd.impl_info_str());
  for (auto _ : state) {
    copy.execute(stream, src, dst);
    stream.wait();
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * Elements(src));
  state.SetBytesProcessed(state.iterations() * Elements(src) * 2 *
                          static_cast<int64_t>(sizeof(float)));
}

void BM_CopyMemcpy(benchmark::State& state) {
  memory src(BigMd(), Engine()), dst(BigMd(), Engine());
  Fill(src, -6.0f, 6.0f, 1);
  const size_t bytes = BigMd().get_size();
  const auto* s = static_cast<const char*>(src.get_data_handle());
  auto* d = static_cast<char*>(dst.get_data_handle());
  for (auto _ : state) {
    const int threads = omp_get_max_threads();
#pragma omp parallel for schedule(static)
    for (int t = 0; t < threads; ++t) {
      const size_t begin = bytes * t / threads, end = bytes * (t + 1) / threads;
      std::memcpy(d + begin, s + begin, end - begin);
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * Elements(src));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes) * 2);
}

// ---- (b), (c) conv 3x3 64->64 on 56x56 ---------------------------------------

enum class ConvMode { kBare, kFused, kUnfused };

void BM_Conv(benchmark::State& state, const Activation* act, ConvMode mode) {
  if (act != nullptr && act->force_avx2 && !rectifier::engine::FastActivationsVectorized()) {
    state.SkipWithError("no AVX2+FMA");
    return;
  }
  const memory::dims src_dims = {1, 64, 56, 56}, wei_dims = {64, 64, 3, 3};
  const memory::desc src_any(src_dims, DT::f32, Tag::any), dst_any(src_dims, DT::f32, Tag::any);
  const memory::desc wei_any(wei_dims, DT::f32, Tag::any), bias_md({64}, DT::f32, Tag::x);
  dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference,
                                    algorithm::convolution_direct, src_any, wei_any, bias_md,
                                    dst_any, {1, 1}, {1, 1}, {1, 1});
  dnnl::primitive_attr attr;
  if (mode == ConvMode::kFused) {
    dnnl::post_ops po;
    if (act->prelu) {
      po.append_prelu(1 << 1);  // per channel
    } else {
      for (const Step& s : act->chain) po.append_eltwise(1.0f, s.alg, s.alpha, s.beta);
    }
    attr.set_post_ops(po);
  }
  dnnl::convolution_forward::primitive_desc pd(d, attr, Engine());
  memory src(pd.src_desc(), Engine()), wei(pd.weights_desc(), Engine());
  memory bias(bias_md, Engine()), dst(pd.dst_desc(), Engine()), out(pd.dst_desc(), Engine());
  Fill(src, -1.0f, 1.0f, 3);
  Fill(wei, -0.05f, 0.05f, 4);
  Fill(bias, -0.1f, 0.1f, 5);
  Args conv_args = {
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}};
  if (mode == ConvMode::kFused && act->prelu) {
    memory slope(memory::desc({1, 64, 1, 1}, DT::f32, Tag::abcd), Engine());
    Fill(slope, 0.0f, 0.5f, 11);
    conv_args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_WEIGHTS] = slope;
  }
  std::vector<Exec> after;
  if (mode == ConvMode::kUnfused && !act->rectifier) after = ActivationPrims(*act, dst, out);
  dnnl::convolution_forward conv(pd);
  dnnl::stream stream(Engine());
  const int64_t n = Elements(dst);
  for (auto _ : state) {
    conv.execute(stream, conv_args);
    for (const Exec& e : after) e.prim.execute(stream, e.args);
    stream.wait();
    if (mode == ConvMode::kUnfused && act->rectifier) {
      // In place on the conv's output, as the engine runs it.
      auto* p = static_cast<float*>(dst.get_data_handle());
      RunRectifier(*act, p, p, n);
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.SetLabel(pd.impl_info_str());
}

void RegisterAll() {
  benchmark::RegisterBenchmark("BM_Copy/reorder", BM_CopyReorder)->UseRealTime();
  benchmark::RegisterBenchmark("BM_Copy/memcpy", BM_CopyMemcpy)->UseRealTime();
  for (const Activation& act : Catalog()) {
    benchmark::RegisterBenchmark(("BM_Standalone/" + act.name).c_str(), BM_Standalone, act)
        ->UseRealTime();
  }
  benchmark::RegisterBenchmark("BM_ConvBare", BM_Conv, nullptr, ConvMode::kBare)->UseRealTime();
  for (const Activation& act : Catalog()) {
    if (!act.rectifier) {
      benchmark::RegisterBenchmark(("BM_ConvFused/" + act.name).c_str(), BM_Conv, &act,
                                   ConvMode::kFused)
          ->UseRealTime();
    }
    benchmark::RegisterBenchmark(("BM_ConvUnfused/" + act.name).c_str(), BM_Conv, &act,
                                 ConvMode::kUnfused)
        ->UseRealTime();
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RegisterAll();
  benchmark::AddCustomContext("omp_threads", std::to_string(omp_get_max_threads()));
  benchmark::AddCustomContext("rectifier_kernel", rectifier::engine::FastActivationsIsa());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
