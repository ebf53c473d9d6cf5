// Depthwise 2-D convolution over channel-innermost layouts (depthwise.h).
//
// Work: one item is an 8-channel group of one image and a band of output
// rows; items are split statically over the OpenMP team. Each output row
// is computed from kernel_h input rows of 8-float pixels, found one of
// three ways:
//  * direct: nChw8c rows without an input activation, wide enough that
//    the few edge pixels whose window leaves the row (at most one in
//    kDirectMaxEdgeShare) can be computed one by one: read in place, the
//    next output row's new rows prefetched;
//  * band: when the band's padded input fits in kBandBytes, it is staged
//    once (copied, activated, zero rows and columns for the padding) and
//    rows are pointers into it;
//  * ring: otherwise each input row is staged into one of kernel_h slots
//    when first needed (the next one prefetched) and reused by the next
//    output rows.
// The inner loop computes up to 8 output pixels at once with the filter
// taps as FMAs over 8 channels; for stride 1 the unrolled loop loads each
// input pixel once per filter row.
#include "server/engine/ops/depthwise.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "server/engine/ops/silu_avx2.h"
#include "server/engine/ops/silu_avx512.h"

namespace rectifier::engine {
namespace {

constexpr int kLanes = 8;
constexpr int kMaxKernel = 7;
// Rows are read in place when at most 1 / kDirectMaxEdgeShare of the output
// pixels are edge pixels (computed one by one).
constexpr int64_t kDirectMaxEdgeShare = 8;
constexpr int64_t kBandBytes = 64 * 1024;

enum class Rows { kDirect, kBand, kRing };

// ---- geometry shared by both versions ----------------------------------------

struct Geometry {
  int64_t groups;     // channels / 8
  int64_t planes;     // batch * groups
  int64_t bands;      // output row bands per plane
  int64_t band_rows;  // output rows per band
  int64_t buf_w;      // staged row width in pixels (column 0: input column -pad_left)
  int64_t in_plane;   // pixels per channel block of one image: in_h * in_w
  int64_t out_plane;  // out_h * out_w
  Rows rows;
};

// Input rows a band of `band_rows` output rows reads.
int64_t BandInputRows(const DepthwiseParams& p, int64_t band_rows) {
  return (band_rows - 1) * p.stride_h + p.kernel_h;
}

Geometry MakeGeometry(const DepthwiseParams& p, int threads, bool vectorized) {
  Geometry g{};
  g.groups = p.channels / kLanes;
  g.planes = p.batch * g.groups;
  // At least ~4 items per thread so that a static split stays balanced;
  // each band boundary stages kernel_h - stride_h rows twice.
  const int64_t want = 4 * static_cast<int64_t>(std::max(threads, 1));
  g.bands = g.planes >= want ? 1 : std::min<int64_t>(p.out_h, (want + g.planes - 1) / g.planes);
  g.band_rows = (p.out_h + g.bands - 1) / g.bands;
  g.bands = (p.out_h + g.band_rows - 1) / g.band_rows;
  g.buf_w = std::max<int64_t>(p.pad_left + p.in_w, (p.out_w - 1) * p.stride_w + p.kernel_w);
  g.in_plane = p.in_h * p.in_w;
  g.out_plane = p.out_h * p.out_w;
  const int64_t band_bytes =
      BandInputRows(p, g.band_rows) * g.buf_w * kLanes * static_cast<int64_t>(sizeof(float));
  // Output pixels whose window leaves the row: those left of the first
  // whose window starts inside it, and right of the last that ends inside.
  const int64_t first = std::min<int64_t>(p.out_w, (p.pad_left + p.stride_w - 1) / p.stride_w);
  const int64_t last = std::max<int64_t>(
      first, std::min<int64_t>(p.out_w, (p.in_w - p.kernel_w + p.pad_left) / p.stride_w + 1));
  const int64_t edges = first + (p.out_w - last);
  if (vectorized && p.block == kLanes && p.input_act == DepthwiseAct::kNone &&
      edges * kDirectMaxEdgeShare <= p.out_w) {
    g.rows = Rows::kDirect;
  } else if (band_bytes <= kBandBytes) {
    g.rows = Rows::kBand;
  } else {
    g.rows = Rows::kRing;
  }
  return g;
}

// Offset of pixel (0, 0) of channels [8 g, 8 g + 8) of image n.
int64_t PlaneOffset(const DepthwiseParams& p, int64_t n, int64_t group, int64_t plane_pixels) {
  const int64_t c0 = group * kLanes;
  const int64_t blocks = p.channels / p.block;
  return ((n * blocks + c0 / p.block) * plane_pixels) * p.block + c0 % p.block;
}

// Per-thread staging buffer (grown, never shrunk).
std::vector<float>& ThreadBuffer() {
  static thread_local std::vector<float> buffer;
  return buffer;
}

// Zeroes the padding columns of `count` staged rows and returns them.
float* PrepareRows(std::vector<float>& buf, const DepthwiseParams& p, const Geometry& g,
                   int64_t count) {
  const size_t need = static_cast<size_t>(count * g.buf_w * kLanes);
  if (buf.size() < need) buf.resize(need);
  for (int64_t i = 0; i < count; ++i) {
    float* row = buf.data() + i * g.buf_w * kLanes;
    std::fill(row, row + p.pad_left * kLanes, 0.0f);
    std::fill(row + (p.pad_left + p.in_w) * kLanes, row + g.buf_w * kLanes, 0.0f);
  }
  return buf.data();
}

// Output rows [oy0, oy1) of one plane: `stage(iy, out)` stages input row iy
// into `out` (a buf_w-pixel row whose padding columns are zero), and
// `row(rows, oy)` computes output row oy from its kernel_h input rows.
template <typename StageFn, typename RowComputeFn>
void RunBand(const DepthwiseParams& p, const Geometry& g, const float* in_plane, int64_t oy0,
             int64_t oy1, StageFn stage, RowComputeFn row) {
  const float* rows[kMaxKernel];
  std::vector<float>& buf = ThreadBuffer();
  const int64_t row_floats = g.buf_w * kLanes;
  if (g.rows == Rows::kBand) {
    // Input rows iy0 .. iy0 + count - 1, those outside the image all zeros.
    const int64_t iy0 = oy0 * p.stride_h - p.pad_top;
    const int64_t count = BandInputRows(p, oy1 - oy0);
    float* band = PrepareRows(buf, p, g, count);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t iy = iy0 + i;
      float* out = band + i * row_floats;
      if (iy < 0 || iy >= p.in_h) {
        std::fill(out, out + row_floats, 0.0f);
      } else {
        stage(iy, out);
      }
    }
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const float* first = band + (oy - oy0) * p.stride_h * row_floats;
      for (int ky = 0; ky < p.kernel_h; ++ky) rows[ky] = first + ky * row_floats;
      row(rows, oy);
    }
    return;
  }
  // Direct and ring: slots 0 .. kernel_h - 1, then a row of zeros.
  float* slots = PrepareRows(buf, p, g, p.kernel_h + 1);
  const float* zero = slots + p.kernel_h * row_floats;
  std::fill(slots + p.kernel_h * row_floats, slots + (p.kernel_h + 1) * row_floats, 0.0f);
  int64_t held[kMaxKernel];
  std::fill(held, held + kMaxKernel, -1);
  for (int64_t oy = oy0; oy < oy1; ++oy) {
    for (int ky = 0; ky < p.kernel_h; ++ky) {
      const int64_t iy = oy * p.stride_h - p.pad_top + ky;
      if (iy < 0 || iy >= p.in_h) {
        rows[ky] = zero;
      } else if (g.rows == Rows::kDirect) {
        rows[ky] = in_plane + iy * p.in_w * p.block;
      } else {
        // The slot holding iy, else the one holding the oldest row (rows
        // only move down).
        int slot = 0;
        for (int k = 1; k < p.kernel_h; ++k) {
          if (held[slot] == iy) break;
          if (held[k] == iy || held[k] < held[slot]) slot = k;
        }
        float* out = slots + slot * row_floats;
        if (held[slot] != iy) {
          stage(iy, out);
          held[slot] = iy;
        }
        rows[ky] = out;
      }
    }
    row(rows, oy);
  }
}

// Calls fn(n, group, oy0, oy1) for every item, split over the OpenMP team.
template <typename ItemFn>
void ForEachItem(const DepthwiseParams& p, const Geometry& g, ItemFn fn) {
  const int64_t items = g.planes * g.bands;
#pragma omp parallel for schedule(static)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t plane = item / g.bands, band = item % g.bands;
    const int64_t oy0 = band * g.band_rows;
    fn(plane / g.groups, plane % g.groups, oy0, std::min(p.out_h, oy0 + g.band_rows));
  }
}

// ---- scalar ----------------------------------------------------------------

float SiluScalar(float x) {
  // As the AVX2 version: -0 below -87.34 (the exact value is below 1.1e-36).
  if (x < -87.34f) return -0.0f;
  return x / (1.0f + std::exp(-std::min(x, 80.0f)));  // NaN stays NaN
}

float ActScalar(const DepthwiseParams& p, DepthwiseAct act, float v) {
  switch (act) {
    case DepthwiseAct::kNone:
      return v;
    case DepthwiseAct::kClip:
      return std::min(std::max(v, p.clip_lo), p.clip_hi);
    case DepthwiseAct::kSilu:
      return SiluScalar(v);
  }
  return v;
}

// ---- AVX2 + FMA ------------------------------------------------------------

struct Epilogue {
  DepthwiseAct act;
  __m256 lo, hi;
};

RECTIFIER_AVX2 inline __m256 Apply(const Epilogue& ep, __m256 v) {
  switch (ep.act) {
    case DepthwiseAct::kNone:
      return v;
    case DepthwiseAct::kClip:
      return _mm256_min_ps(_mm256_max_ps(v, ep.lo), ep.hi);
    case DepthwiseAct::kSilu:
      return Silu8(v);
  }
  return v;
}

// NB output pixels starting at output column ox of one row. rows[ky] holds
// 8-float pixels; input column ix of the output's window is at pixel
// ox * SW - shift + kx (shift: pad_left for source rows read in place, 0
// for staged rows, which start at input column -pad_left).
template <int KW, int SW, int NB>
RECTIFIER_AVX2 inline void Block(const float* const* rows, int kh, const float* w, int64_t ox,
                                 int64_t shift, __m256 bias, const Epilogue& ep, float* dst,
                                 int64_t dst_step) {
  __m256 acc[NB];
  for (int j = 0; j < NB; ++j) acc[j] = bias;
  for (int ky = 0; ky < kh; ++ky) {
    const float* r = rows[ky] + (ox * SW - shift) * kLanes;
    if (NB == 8) {
      // The next block's new input pixels (hardware prefetch alone leaves
      // the first load of each block waiting on memory).
      for (int q = 0; q < SW * NB * kLanes; q += 16)
        _mm_prefetch(reinterpret_cast<const char*>(r + 2 * SW * NB * kLanes + q), _MM_HINT_T0);
    }
    const float* wk = w + ky * KW * kLanes;
    for (int kx = 0; kx < KW; ++kx) {
      const __m256 wv = _mm256_loadu_ps(wk + kx * kLanes);
      for (int j = 0; j < NB; ++j)
        acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(r + (j * SW + kx) * kLanes), wv, acc[j]);
    }
  }
  for (int j = 0; j < NB; ++j) _mm256_storeu_ps(dst + j * dst_step, Apply(ep, acc[j]));
}

// Output pixels [ox0, ox1) of one row, 8 at a time, then the rest at once.
template <int KW, int SW>
RECTIFIER_AVX2 inline void Span(const float* const* rows, int kh, const float* w, int64_t ox0,
                                int64_t ox1, int64_t shift, __m256 b, const Epilogue& ep,
                                float* dst, int64_t step) {
  int64_t ox = ox0;
  for (; ox + 8 <= ox1; ox += 8)
    Block<KW, SW, 8>(rows, kh, w, ox, shift, b, ep, dst + ox * step, step);
  float* d = dst + ox * step;
  switch (ox1 - ox) {
    case 7:
      return Block<KW, SW, 7>(rows, kh, w, ox, shift, b, ep, d, step);
    case 6:
      return Block<KW, SW, 6>(rows, kh, w, ox, shift, b, ep, d, step);
    case 5:
      return Block<KW, SW, 5>(rows, kh, w, ox, shift, b, ep, d, step);
    case 4:
      return Block<KW, SW, 4>(rows, kh, w, ox, shift, b, ep, d, step);
    case 3:
      return Block<KW, SW, 3>(rows, kh, w, ox, shift, b, ep, d, step);
    case 2:
      return Block<KW, SW, 2>(rows, kh, w, ox, shift, b, ep, d, step);
    case 1:
      return Block<KW, SW, 1>(rows, kh, w, ox, shift, b, ep, d, step);
    default:
      return;
  }
}

// One output pixel of a source row read in place, taps outside the row
// skipped (the left and right edges).
template <int KW, int SW>
RECTIFIER_AVX2 inline void EdgePixel(const float* const* rows, int kh, const float* w, int64_t ox,
                                     const DepthwiseParams& p, __m256 bias, const Epilogue& ep,
                                     float* dst) {
  __m256 acc = bias;
  for (int ky = 0; ky < kh; ++ky) {
    for (int kx = 0; kx < KW; ++kx) {
      const int64_t ix = ox * SW - p.pad_left + kx;
      if (ix < 0 || ix >= p.in_w) continue;
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(rows[ky] + ix * kLanes),
                            _mm256_loadu_ps(w + (ky * KW + kx) * kLanes), acc);
    }
  }
  _mm256_storeu_ps(dst, Apply(ep, acc));
}

// One output row of one 8-channel group. `direct`: rows[ky] are the
// source's rows (nChw8c, no input activation), read in place; else staged
// rows with zero padding columns.
template <int KW, int SW>
RECTIFIER_AVX2 void RowAvx2(const float* const* rows, bool direct, const DepthwiseParams& p,
                            const float* w, const float* bias, float* dst) {
  const Epilogue ep{p.output_act, _mm256_set1_ps(p.clip_lo), _mm256_set1_ps(p.clip_hi)};
  const __m256 b = bias != nullptr ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
  const int kh = p.kernel_h;
  const int64_t step = p.block;
  if (!direct) {
    Span<KW, SW>(rows, kh, w, 0, p.out_w, 0, b, ep, dst, step);
    return;
  }
  // The rows the next output row adds (read from memory, not yet cached):
  // requested now, a row's compute ahead of their use.
  {
    const int64_t row_floats = p.in_w * p.block;
    const char* next = reinterpret_cast<const char*>(rows[kh - 1] + row_floats);
    const int64_t bytes = static_cast<int64_t>(SW) * row_floats * sizeof(float);
    for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
  }
  // Interior: every tap inside the row.
  const int64_t lo = std::min<int64_t>(p.out_w, (p.pad_left + SW - 1) / SW);
  const int64_t hi =
      std::max<int64_t>(lo, std::min<int64_t>(p.out_w, (p.in_w - KW + p.pad_left) / SW + 1));
  for (int64_t ox = 0; ox < lo; ++ox) EdgePixel<KW, SW>(rows, kh, w, ox, p, b, ep, dst + ox * step);
  Span<KW, SW>(rows, kh, w, lo, hi, p.pad_left, b, ep, dst, step);
  for (int64_t ox = hi; ox < p.out_w; ++ox)
    EdgePixel<KW, SW>(rows, kh, w, ox, p, b, ep, dst + ox * step);
}

using RowFn = void (*)(const float* const*, bool, const DepthwiseParams&, const float*,
                       const float*, float*);

RowFn PickRow(int kw, int sw) {
  switch (kw * 10 + sw) {
    case 11:
      return RowAvx2<1, 1>;
    case 12:
      return RowAvx2<1, 2>;
    case 31:
      return RowAvx2<3, 1>;
    case 32:
      return RowAvx2<3, 2>;
    case 51:
      return RowAvx2<5, 1>;
    case 52:
      return RowAvx2<5, 2>;
    case 71:
      return RowAvx2<7, 1>;
    case 72:
      return RowAvx2<7, 2>;
    default:
      return nullptr;
  }
}

// Copies input row `iy` of a plane into `out` (from pixel pad_left on),
// activated.
RECTIFIER_AVX2 void StageAvx2(const DepthwiseParams& p, const float* plane, int64_t iy,
                              float* out) {
  const float* src = plane + iy * p.in_w * p.block;
  float* o = out + p.pad_left * kLanes;
  if (iy + 1 < p.in_h) {
    // The next row this plane stages: its lines requested now.
    const float* next = src + p.in_w * p.block;
    const int64_t step = p.block == kLanes ? 2 : 1;  // pixels per 64-byte line
    for (int64_t x = 0; x < p.in_w; x += step)
      _mm_prefetch(reinterpret_cast<const char*>(next + x * p.block), _MM_HINT_T0);
  }
  if (p.input_act == DepthwiseAct::kSilu) {
    for (int64_t x = 0; x < p.in_w; ++x)
      _mm256_storeu_ps(o + x * kLanes, Silu8(_mm256_loadu_ps(src + x * p.block)));
  } else {
    for (int64_t x = 0; x < p.in_w; ++x)
      _mm256_storeu_ps(o + x * kLanes, _mm256_loadu_ps(src + x * p.block));
  }
}

RECTIFIER_AVX2 void SiluFastAvx2(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) _mm256_storeu_ps(y + i, Silu8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    float in[kLanes] = {}, out[kLanes];
    std::copy(x + i, x + n, in);
    _mm256_storeu_ps(out, Silu8(_mm256_loadu_ps(in)));
    std::copy(out, out + (n - i), y + i);
  }
}

// GCC 12 reports the AVX-512 intrinsics' own undefined-vector operands as
// maybe uninitialized once they are inlined here (a false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
RECTIFIER_AVX512 void SiluFastAvx512(const float* x, float* y, int64_t n) {
  constexpr int kWide = 16;
  int64_t i = 0;
  for (; i + kWide <= n; i += kWide) _mm512_storeu_ps(y + i, Silu16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, Silu16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace

bool UseAvx512Silu() {
  static const bool use = [] {
    constexpr auto kAvx512Core = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    return __builtin_cpu_supports("avx512f") && (isa & kAvx512Core) == kAvx512Core;
  }();
  return use;
}

bool DepthwiseSupported(const DepthwiseParams& p) {
  const bool block_ok = p.block == 8 || p.block == 16 || p.block == p.channels;
  return p.batch > 0 && p.channels > 0 && p.channels % kLanes == 0 && block_ok &&
         p.channels % p.block == 0 && p.in_h > 0 && p.in_w > 0 && p.out_h > 0 && p.out_w > 0 &&
         p.kernel_h >= 1 && p.kernel_h <= kMaxKernel &&
         (p.kernel_w == 1 || p.kernel_w == 3 || p.kernel_w == 5 || p.kernel_w == 7) &&
         (p.stride_w == 1 || p.stride_w == 2) && p.stride_h >= 1 && p.stride_h <= 2 &&
         p.pad_top >= 0 && p.pad_left >= 0 && p.pad_top < p.kernel_h && p.pad_left < p.kernel_w &&
         (p.input_act == DepthwiseAct::kNone || p.input_act == DepthwiseAct::kSilu) &&
         // Every output reads at least one input row and column.
         (p.out_h - 1) * p.stride_h - p.pad_top < p.in_h &&
         (p.out_w - 1) * p.stride_w - p.pad_left < p.in_w;
}

void PackDepthwiseWeights(const float* oihw, int64_t channels, int kernel_h, int kernel_w,
                          float* packed) {
  const int64_t taps = static_cast<int64_t>(kernel_h) * kernel_w;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t t = 0; t < taps; ++t)
      packed[((c / kLanes) * taps + t) * kLanes + c % kLanes] = oihw[c * taps + t];
}

void DepthwiseConv2dScalar(const DepthwiseParams& p, const float* src, const float* packed_weights,
                           const float* bias, float* dst) {
  const Geometry g = MakeGeometry(p, omp_get_max_threads(), /*vectorized=*/false);
  const int64_t taps = static_cast<int64_t>(p.kernel_h) * p.kernel_w;
  ForEachItem(p, g, [&](int64_t n, int64_t group, int64_t oy0, int64_t oy1) {
    const float* in_plane = src + PlaneOffset(p, n, group, g.in_plane);
    float* out_plane = dst + PlaneOffset(p, n, group, g.out_plane);
    const float* w = packed_weights + group * taps * kLanes;
    auto stage = [&](int64_t iy, float* out) {
      const float* row = in_plane + iy * p.in_w * p.block;
      for (int64_t x = 0; x < p.in_w; ++x)
        for (int l = 0; l < kLanes; ++l)
          out[(p.pad_left + x) * kLanes + l] = ActScalar(p, p.input_act, row[x * p.block + l]);
    };
    auto row = [&](const float* const* rows, int64_t oy) {
      for (int64_t ox = 0; ox < p.out_w; ++ox) {
        for (int l = 0; l < kLanes; ++l) {
          float acc = bias != nullptr ? bias[group * kLanes + l] : 0.0f;
          for (int ky = 0; ky < p.kernel_h; ++ky)
            for (int kx = 0; kx < p.kernel_w; ++kx)
              acc = std::fma(rows[ky][(ox * p.stride_w + kx) * kLanes + l],
                             w[(ky * p.kernel_w + kx) * kLanes + l], acc);
          out_plane[(oy * p.out_w + ox) * p.block + l] = ActScalar(p, p.output_act, acc);
        }
      }
    };
    RunBand(p, g, in_plane, oy0, oy1, stage, row);
  });
}

void DepthwiseConv2d(const DepthwiseParams& p, const float* src, const float* packed_weights,
                     const float* bias, float* dst) {
  RowFn row_fn = CpuHasAvx2Fma() ? PickRow(p.kernel_w, p.stride_w) : nullptr;
  if (row_fn == nullptr) {
    DepthwiseConv2dScalar(p, src, packed_weights, bias, dst);
    return;
  }
  const Geometry g = MakeGeometry(p, omp_get_max_threads(), /*vectorized=*/true);
  const int64_t taps = static_cast<int64_t>(p.kernel_h) * p.kernel_w;
  const bool direct = g.rows == Rows::kDirect;
  ForEachItem(p, g, [&](int64_t n, int64_t group, int64_t oy0, int64_t oy1) {
    const float* in_plane = src + PlaneOffset(p, n, group, g.in_plane);
    float* out_plane = dst + PlaneOffset(p, n, group, g.out_plane);
    const float* w = packed_weights + group * taps * kLanes;
    const float* b = bias != nullptr ? bias + group * kLanes : nullptr;
    auto stage = [&](int64_t iy, float* out) { StageAvx2(p, in_plane, iy, out); };
    auto row = [&](const float* const* rows, int64_t oy) {
      row_fn(rows, direct, p, w, b, out_plane + oy * p.out_w * p.block);
    };
    RunBand(p, g, in_plane, oy0, oy1, stage, row);
  });
}

void SiluFastOn(SiluIsa isa, const float* x, float* y, int64_t n) {
  switch (isa) {
    case SiluIsa::kAvx512:
      SiluFastAvx512(x, y, n);
      return;
    case SiluIsa::kAvx2:
      SiluFastAvx2(x, y, n);
      return;
    case SiluIsa::kScalar:
      break;
  }
  for (int64_t i = 0; i < n; ++i) y[i] = SiluScalar(x[i]);
}

void SiluFast(const float* x, float* y, int64_t n) {
  SiluFastOn(UseAvx512Silu()   ? SiluIsa::kAvx512
             : CpuHasAvx2Fma() ? SiluIsa::kAvx2
                               : SiluIsa::kScalar,
             x, y, n);
}

void SiluFastParallel(const float* x, float* y, int64_t n) {
  constexpr int64_t kChunk = 16 * 1024;  // 64 KiB: balances a 56x56x144 tensor
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1) {
    SiluFast(x, y, n);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk;
    SiluFast(x + begin, y + begin, std::min(kChunk, n - begin));
  }
}

bool DepthwiseVectorized() { return CpuHasAvx2Fma(); }

}  // namespace rectifier::engine
