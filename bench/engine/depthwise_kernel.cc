// One depthwise convolution, oneDNN's kernel (with the activation as a
// post-op) against Rectifier's (server/engine/ops/depthwise.h), alternately
// in rounds, in the same channel-blocked layout; a third column times
// Rectifier's kernel also applying SiLU to its input (what it does when the
// 1x1 convolution before it leaves its SiLU to it). Prints the
// implementations, the median per-round times and ratio, and the largest
// difference between the two outputs. Data behind docs/PERFORMANCE.md
// ("Rectifier's depthwise kernel").
//
//   depthwise_kernel BATCH CHANNELS SIZE STRIDE K [none|clip|silu] [8|16]
//   OMP_NUM_THREADS=2 ONEDNN_MAX_CPU_ISA=AVX2 build/bench/engine/depthwise_kernel 8 96 112 2 3 silu
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/engine/bench_timing.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "server/engine/ops/depthwise.h"

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using DT = memory::data_type;
namespace eng = rectifier::engine;
using rectifier::bench::Median;
using rectifier::bench::MedianMs;

void Fill(float* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; ++i)
    p[i] = static_cast<float>(((i + seed) * 2654435761u) % 1000) / 250.f - 2.0f;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s BATCH CHANNELS SIZE STRIDE K [none|clip|silu] [8|16]\n",
                 argv[0]);
    return 2;
  }
  const int64_t n = std::atoll(argv[1]), c = std::atoll(argv[2]), h = std::atoll(argv[3]);
  const int s = std::atoi(argv[4]), k = std::atoi(argv[5]);
  const std::string act = argc > 6 ? argv[6] : "silu";
  const int64_t block = argc > 7 ? std::atoll(argv[7]) : 8;
  const int pad = k / 2;
  const int64_t oh = (h + 2 * pad - k) / s + 1;

  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const Tag tag = block == 16 ? Tag::nChw16c : Tag::nChw8c;
  memory::desc src_md({n, c, h, h}, DT::f32, tag), dst_md({n, c, oh, oh}, DT::f32, tag);
  memory::desc w_md({c, 1, 1, k, k}, DT::f32, Tag::goihw), b_md({c}, DT::f32, Tag::x);
  memory::desc w_any({c, 1, 1, k, k}, DT::f32, Tag::any);
  dnnl::post_ops po;
  if (act == "clip") po.append_eltwise(1.0f, dnnl::algorithm::eltwise_clip_v2, 0.0f, 6.0f);
  if (act == "silu") po.append_eltwise(1.0f, dnnl::algorithm::eltwise_swish, 1.0f, 0.0f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference,
                                    dnnl::algorithm::convolution_direct, src_md, w_any, b_md,
                                    dst_md, {s, s}, {pad, pad}, {pad, pad});
  dnnl::convolution_forward::primitive_desc pd(d, attr, engine);
  memory src(src_md, engine), w_plain(w_md, engine), w(pd.weights_desc(), engine),
      bias(b_md, engine), dst(dst_md, engine);
  const size_t src_n = src_md.get_size() / sizeof(float);
  Fill(static_cast<float*>(src.get_data_handle()), src_n, 1);
  Fill(static_cast<float*>(w_plain.get_data_handle()), static_cast<size_t>(c * k * k), 7);
  Fill(static_cast<float*>(bias.get_data_handle()), static_cast<size_t>(c), 3);
  dnnl::reorder(w_plain, w).execute(stream, w_plain, w);
  dnnl::convolution_forward conv(pd);
  // With SiLU, also oneDNN without the post-op followed by Rectifier's SiLU
  // pass over its output (what a plan runs when the depthwise convolution
  // stays on oneDNN: CompileOptions::silu_kernel).
  dnnl::convolution_forward::primitive_desc bare_pd(d, dnnl::primitive_attr(), engine);
  dnnl::convolution_forward bare(bare_pd);
  memory bare_dst(dst_md, engine);

  eng::DepthwiseParams p;
  p.batch = n;
  p.channels = c;
  p.block = block;
  p.in_h = p.in_w = h;
  p.out_h = p.out_w = oh;
  p.kernel_h = p.kernel_w = k;
  p.stride_h = p.stride_w = s;
  p.pad_top = p.pad_left = pad;
  if (act == "clip") {
    p.output_act = eng::DepthwiseAct::kClip;
    p.clip_lo = 0;
    p.clip_hi = 6;
  } else if (act == "silu") {
    p.output_act = eng::DepthwiseAct::kSilu;
  }
  if (!eng::DepthwiseSupported(p)) {
    std::fprintf(stderr, "shape not supported by Rectifier's kernel\n");
    return 2;
  }
  std::vector<float> packed(static_cast<size_t>(c * k * k));
  eng::PackDepthwiseWeights(static_cast<const float*>(w_plain.get_data_handle()), c, k, k,
                            packed.data());
  std::vector<float> ours(dst_md.get_size() / sizeof(float));
  const float* sp = static_cast<const float*>(src.get_data_handle());
  const float* bp = static_cast<const float*>(bias.get_data_handle());
  eng::DepthwiseParams p_in = p;
  p_in.input_act = eng::DepthwiseAct::kSilu;
  std::vector<float> ours_in(ours.size());

  auto run_onednn = [&] {
    conv.execute(
        stream,
        {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}});
    stream.wait();
  };
  auto run_bare_then_silu = [&] {
    bare.execute(stream, {{DNNL_ARG_SRC, src},
                          {DNNL_ARG_WEIGHTS, w},
                          {DNNL_ARG_BIAS, bias},
                          {DNNL_ARG_DST, bare_dst}});
    stream.wait();
    float* y = static_cast<float*>(bare_dst.get_data_handle());
    eng::SiluFastParallel(y, y, static_cast<int64_t>(dst_md.get_size() / sizeof(float)));
  };
  auto run_ours = [&] { eng::DepthwiseConv2d(p, sp, packed.data(), bp, ours.data()); };
  auto run_ours_in = [&] { eng::DepthwiseConv2d(p_in, sp, packed.data(), bp, ours_in.data()); };
  for (int i = 0; i < 3; ++i) {
    run_onednn();
    run_ours();
    run_ours_in();
  }
  double max_diff = 0;
  const float* dp = static_cast<const float*>(dst.get_data_handle());
  for (size_t i = 0; i < ours.size(); ++i)
    max_diff = std::max(max_diff, std::abs(static_cast<double>(dp[i]) - ours[i]) /
                                      std::max(1.0, std::abs(static_cast<double>(dp[i]))));
  std::vector<double> a, b, bi, ratio, pass, pass_ratio;
  for (int round = 0; round < 7; ++round) {
    a.push_back(MedianMs(run_onednn, 10));
    b.push_back(MedianMs(run_ours, 10));
    bi.push_back(MedianMs(run_ours_in, 10));
    ratio.push_back(a.back() / b.back());
    if (act == "silu") {
      pass.push_back(MedianMs(run_bare_then_silu, 10));
      pass_ratio.push_back(pass.back() / b.back());
    }
  }
  std::printf(
      "dw %dx%d s%d %s, batch %lld, %lld ch, %lld -> %lld, nChw%lldc: oneDNN [%s] %.3f ms, "
      "Rectifier [%s] %.3f ms (with input SiLU %.3f ms); oneDNN/Rectifier %.2f; max diff "
      "%.2e\n",
      k, k, s, act.c_str(), static_cast<long long>(n), static_cast<long long>(c),
      static_cast<long long>(h), static_cast<long long>(oh), static_cast<long long>(block),
      pd.impl_info_str(), Median(a), eng::DepthwiseVectorized() ? "avx2" : "scalar", Median(b),
      Median(bi), Median(ratio), max_diff);
  if (act == "silu") {
    std::printf("  oneDNN without the post-op, then the SiLU pass: %.3f ms; that/Rectifier %.2f\n",
                Median(pass), Median(pass_ratio));
  }
  return 0;
}
