// One MobileNet-style pair, a 1x1 convolution (+activation) followed by a
// depthwise KxK convolution (+activation), run as two oneDNN primitives and
// as one with the depthwise post-op, alternately in rounds; prints the
// implementations and the median per-round ratio two-steps / fused, and
// checks that both give the same output. The data behind the conditions of
// depthwise fusion (docs/ENGINE.md, docs/PERFORMANCE.md).
//
//   dw_fusion_pairs BATCH IN EXPANDED SIZE STRIDE [8|16] [clip|swish] [K]
//   OMP_NUM_THREADS=2 ONEDNN_MAX_CPU_ISA=AVX2 build/bench/engine/dw_fusion_pairs 8 16 96 112 2 8
//   clip 3
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/engine/bench_timing.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace {

using dnnl::algorithm;
using dnnl::memory;
using Tag = memory::format_tag;
using DT = memory::data_type;
using rectifier::bench::MedianMs;

void Fill(const memory& m) {
  float* p = static_cast<float*>(m.get_data_handle());
  const size_t n = m.get_desc().get_size() / sizeof(float);
  for (size_t i = 0; i < n; ++i)
    p[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.f - 0.5f;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr,
                 "usage: %s BATCH IN EXPANDED SIZE STRIDE [8|16] [clip|swish] [K]\n"
                 "IN must be a multiple of the block (no padding channels)\n",
                 argv[0]);
    return 2;
  }
  const int64_t n = std::atoll(argv[1]), ic = std::atoll(argv[2]), oc = std::atoll(argv[3]);
  const int64_t h = std::atoll(argv[4]), s = std::atoll(argv[5]);
  const Tag blk = argc > 6 && std::string(argv[6]) == "16" ? Tag::nChw16c : Tag::nChw8c;
  const bool swish = argc > 7 && std::string(argv[7]) == "swish";
  const int64_t k = argc > 8 ? std::atoll(argv[8]) : 3;
  const int64_t pad = (k - 1) / 2, oh = (h - 1) / s + 1;
  const algorithm act = swish ? algorithm::eltwise_swish : algorithm::eltwise_clip;
  const float alpha = swish ? 1.f : 0.f, beta = swish ? 0.f : 6.f;

  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream st(eng);
  const memory::desc src({n, ic, h, h}, DT::f32, blk), mid({n, oc, h, h}, DT::f32, blk);
  const memory::desc dst({n, oc, oh, oh}, DT::f32, blk);
  const memory::desc w1({oc, ic, 1, 1}, DT::f32, Tag::any), b1({oc}, DT::f32, Tag::x);
  const memory::desc w2({oc, 1, 1, k, k}, DT::f32, Tag::any), b2({oc}, DT::f32, Tag::x);
  const auto kInf = dnnl::prop_kind::forward_inference;
  const auto kDirect = algorithm::convolution_direct;

  dnnl::post_ops po;
  po.append_eltwise(1.f, act, alpha, beta);
  dnnl::primitive_attr a1;
  a1.set_post_ops(po);
  dnnl::convolution_forward::primitive_desc pd1(
      {kInf, kDirect, src, w1, b1, mid, {1, 1}, {0, 0}, {0, 0}}, a1, eng);
  dnnl::convolution_forward::primitive_desc pd2(
      {kInf, kDirect, mid, w2, b2, dst, {s, s}, {pad, pad}, {pad, pad}}, a1, eng);
  dnnl::post_ops pof;
  pof.append_eltwise(1.f, act, alpha, beta);
  pof.append_dw(DT::f32, DT::f32, DT::f32, k, s, pad, 0, {});
  pof.append_eltwise(1.f, act, alpha, beta);
  dnnl::primitive_attr af;
  af.set_post_ops(pof);
  dnnl::convolution_forward::primitive_desc pdf;
  try {
    pdf = dnnl::convolution_forward::primitive_desc(
        {kInf, kDirect, src, w1, b1, mid, {1, 1}, {0, 0}, {0, 0}}, af, eng);
  } catch (const dnnl::error& e) {
    std::printf("two steps: %s + %s; no fused kernel (%s)\n", pd1.impl_info_str(),
                pd2.impl_info_str(), e.what());
    return 0;
  }
  memory ms(src, eng), mm(mid, eng), md(dst, eng), mdf(dst, eng);
  memory mw1(pd1.weights_desc(), eng), mb1(b1, eng), mw2(pd2.weights_desc(), eng), mb2(b2, eng);
  for (const memory* m : {&ms, &mw1, &mb1, &mw2, &mb2}) Fill(*m);
  const int dw_w = DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS;
  const int dw_b = DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS;
  memory mwf1(pdf.weights_desc(), eng), mwdw(pdf.query_md(dnnl::query::exec_arg_md, dw_w), eng);
  dnnl::reorder(mw1, mwf1).execute(st, mw1, mwf1);
  dnnl::reorder(mw2, mwdw).execute(st, mw2, mwdw);
  st.wait();
  dnnl::convolution_forward c1(pd1), c2(pd2), cf(pdf);
  auto two_steps = [&] {
    c1.execute(
        st,
        {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw1}, {DNNL_ARG_BIAS, mb1}, {DNNL_ARG_DST, mm}});
    c2.execute(
        st,
        {{DNNL_ARG_SRC, mm}, {DNNL_ARG_WEIGHTS, mw2}, {DNNL_ARG_BIAS, mb2}, {DNNL_ARG_DST, md}});
    st.wait();
  };
  auto fused = [&] {
    cf.execute(st, {{DNNL_ARG_SRC, ms},
                    {DNNL_ARG_WEIGHTS, mwf1},
                    {DNNL_ARG_BIAS, mb1},
                    {DNNL_ARG_DST, mdf},
                    {dw_w, mwdw},
                    {dw_b, mb2}});
    st.wait();
  };
  std::vector<double> ratios;
  double two_ms = 0, fused_ms = 0;
  for (int round = 0; round < 7; ++round) {
    two_ms = MedianMs(two_steps, 10, 2);
    fused_ms = MedianMs(fused, 10, 2);
    ratios.push_back(two_ms / fused_ms);
  }
  std::sort(ratios.begin(), ratios.end());
  const float* want = static_cast<const float*>(md.get_data_handle());
  const float* got = static_cast<const float*>(mdf.get_data_handle());
  double err = 0;
  for (size_t i = 0; i < dst.get_size() / sizeof(float); ++i) {
    err = std::max(err, static_cast<double>(std::fabs(want[i] - got[i])));
  }
  std::printf(
      "two steps: %s + %s; fused: %s\n"
      "last round %.3f / %.3f ms; two-steps/fused per round: median %.2f (min %.2f, max %.2f); "
      "max abs diff %.2g\n",
      pd1.impl_info_str(), pd2.impl_info_str(), pdf.impl_info_str(), two_ms, fused_ms,
      ratios[ratios.size() / 2], ratios.front(), ratios.back(), err);
  return err < 1e-3 ? 0 : 1;
}
