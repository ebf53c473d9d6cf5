// One 3x3 stride-1 convolution (padding 1, bias, nChw8c), oneDNN's direct
// kernel against Rectifier's Winograd F(2x2, 3x3) (server/engine/ops/
// winograd.h), alternating rounds; prints both medians, their ratio, the
// effective GFLOP/s (direct convolution FLOPs over time) and the largest
// difference between the outputs. Run by hand (docs/PERFORMANCE.md,
// "Winograd F(2x2, 3x3)"):
//
//   winograd_kernel BATCH IN_CHANNELS OUT_CHANNELS SIZE [none|relu|silu] [2|4] [8|16]
//
// The output tile: 2 for F(2x2, 3x3) (the default), 4 for F(4x4, 3x3); the
// layout: 8 for nChw8c (the default; the AVX2 kernel, and oneDNN's AVX2
// kernel under ONEDNN_MAX_CPU_ISA=AVX2), 16 for nChw16c (the AVX-512 one).
//   OMP_NUM_THREADS=2 ONEDNN_MAX_CPU_ISA=AVX2 build/bench/engine/winograd_kernel 8 64 64 56
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench/engine/bench_timing.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "server/engine/ops/winograd.h"

namespace eng = rectifier::engine;
using dnnl::memory;
using rectifier::bench::Median;
using rectifier::bench::MedianMs;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: %s BATCH IN_CHANNELS OUT_CHANNELS SIZE [none|relu|silu] [2|4] [8|16]\n",
                 argv[0]);
    return 2;
  }
  eng::WinogradParams p;
  p.batch = std::atoi(argv[1]);
  p.in_channels = std::atoi(argv[2]);
  p.out_channels = std::atoi(argv[3]);
  p.height = p.width = std::atoi(argv[4]);
  const std::string act = argc > 5 ? argv[5] : "none";
  if (argc > 6) p.tile = std::atoi(argv[6]);
  if (argc > 7) p.lanes = std::atoi(argv[7]);
  dnnl::post_ops po;
  if (act == "relu") {
    p.act = eng::DepthwiseAct::kClip;
    p.clip_lo = 0.0f;
    po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  } else if (act == "silu") {
    p.act = eng::DepthwiseAct::kSilu;
    po.append_eltwise(1.0f, dnnl::algorithm::eltwise_swish, 1.0f, 0.0f);
  }
  if (!eng::WinogradSupported(p) || !eng::WinogradVectorized(p.lanes)) {
    std::fprintf(stderr, "unsupported shape, or no AVX2 + FMA (AVX-512 for 16)\n");
    return 2;
  }
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const memory::dims src_dims = {p.batch, p.in_channels, p.height, p.width};
  const memory::dims dst_dims = {p.batch, p.out_channels, p.height, p.width};
  const memory::dims w_dims = {p.out_channels, p.in_channels, 3, 3};
  const memory::format_tag tag =
      p.lanes == 16 ? memory::format_tag::nChw16c : memory::format_tag::nChw8c;
  const memory::desc src_md(src_dims, memory::data_type::f32, tag);
  const memory::desc dst_md(dst_dims, memory::data_type::f32, tag);
  const memory::desc b_md({p.out_channels}, memory::data_type::f32, memory::format_tag::x);
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  const dnnl::convolution_forward::primitive_desc pd(
      dnnl::convolution_forward::desc(
          dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md,
          memory::desc(w_dims, memory::data_type::f32, memory::format_tag::any), b_md, dst_md,
          {1, 1}, {1, 1}, {1, 1}),
      attr, engine);
  memory src(src_md, engine), dst(dst_md, engine), bias(b_md, engine),
      weights(pd.weights_desc(), engine);
  memory plain({w_dims, memory::data_type::f32, memory::format_tag::oihw}, engine);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (memory* m : {&src, &bias, &plain}) {
    float* q = static_cast<float*>(m->get_data_handle());
    for (size_t i = 0; i < m->get_desc().get_size() / sizeof(float); ++i) q[i] = dist(rng);
  }
  dnnl::reorder(plain, weights).execute(stream, plain, weights);
  stream.wait();
  const dnnl::convolution_forward conv(pd);
  std::vector<float> u(eng::WinogradFilterSize(p));
  eng::WinogradTransformFilter(p, static_cast<const float*>(plain.get_data_handle()), u.data());
  std::vector<float> out(dst_md.get_size() / sizeof(float));

  auto run_onednn = [&] {
    conv.execute(stream, {{DNNL_ARG_SRC, src},
                          {DNNL_ARG_WEIGHTS, weights},
                          {DNNL_ARG_BIAS, bias},
                          {DNNL_ARG_DST, dst}});
    stream.wait();
  };
  auto run_winograd = [&] {
    eng::WinogradConv3x3(p, static_cast<const float*>(src.get_data_handle()), u.data(),
                         static_cast<const float*>(bias.get_data_handle()), out.data());
  };
  run_onednn();
  run_winograd();
  const float* want = static_cast<const float*>(dst.get_data_handle());
  double diff = 0, largest = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(out[i] - want[i])));
    largest = std::max(largest, static_cast<double>(std::fabs(want[i])));
  }
  std::vector<double> onednn, winograd, ratio;
  for (int round = 0; round < 7; ++round) {
    onednn.push_back(MedianMs(run_onednn, 5, 1));
    winograd.push_back(MedianMs(run_winograd, 5, 1));
    ratio.push_back(onednn.back() / winograd.back());
  }
  const double gflop =
      2.0 * p.batch * p.out_channels * p.in_channels * 9 * p.height * p.width / 1e9;
  const double a = Median(onednn), b = Median(winograd);
  std::printf(
      "3x3 s1 %s, F(%dx%d, 3x3), batch %lld, %lld -> %lld ch, %lld x %lld (%lld tiles), %d "
      "threads: oneDNN [%s] "
      "%.3f ms (%.0f GFLOP/s), Winograd %.3f ms (%.0f effective); oneDNN/Winograd %.2f; max "
      "diff %.2e of %.1f\n",
      act.c_str(), p.tile, p.tile, static_cast<long long>(p.batch),
      static_cast<long long>(p.in_channels), static_cast<long long>(p.out_channels),
      static_cast<long long>(p.height), static_cast<long long>(p.width),
      static_cast<long long>(eng::WinogradTiles(p)), omp_get_max_threads(), pd.impl_info_str(), a,
      gflop / a * 1e3, b, gflop / b * 1e3, Median(ratio), diff, largest);
  return 0;
}
