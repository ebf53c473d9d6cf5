#include "server/imaging/segmentation.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace rectifier::imaging {
namespace {

// Where one original pixel (row or column) samples the output grid: the two
// neighbouring output cells and the weight of the second.
struct Tap {
  int i0 = 0;
  int i1 = 0;
  float w1 = 0.0f;
};

// original pixel centre -> input pixel (the transform) -> output cell
// (half-pixel centres, as a linear Resize with half_pixel coordinates).
std::vector<Tap> Taps(int original, double scale, double offset, int input, int output) {
  std::vector<Tap> taps(static_cast<size_t>(original));
  const double ratio = static_cast<double>(output) / input;
  for (int i = 0; i < original; ++i) {
    const double u = ((i + 0.5) * scale + offset) * ratio - 0.5;
    const double clamped = std::clamp(u, 0.0, static_cast<double>(output - 1));
    Tap& t = taps[static_cast<size_t>(i)];
    t.i0 = static_cast<int>(clamped);
    t.i1 = std::min(t.i0 + 1, output - 1);
    t.w1 = static_cast<float>(clamped - t.i0);
  }
  return taps;
}

// Probabilities of one pixel's interpolated scores (in place); `best` is
// the largest score.
void Activate(ScoreActivation activation, float best, std::vector<float>& scores) {
  if (activation == ScoreActivation::kSoftmax) {
    float sum = 0.0f;
    for (float& s : scores) {
      s = std::exp(s - best);
      sum += s;
    }
    for (float& s : scores) s /= sum;
  } else if (activation == ScoreActivation::kSigmoid) {
    for (float& s : scores) s = 1.0f / (1.0f + std::exp(-s));
  }
}

absl::Status CheckMap(const ScoreMap& map, const ImageTransform& transform) {
  if (map.classes < 1 || map.height < 1 || map.width < 1 || map.input_width < 1 ||
      map.input_height < 1) {
    return absl::InvalidArgumentError("segmentation output or input size is empty");
  }
  if (map.classes > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("segmentation output has ", map.classes, " classes; at most 65536"));
  }
  const int64_t expected = int64_t{map.classes} * map.height * map.width;
  if (static_cast<int64_t>(map.scores.size()) != expected) {
    return absl::InvalidArgumentError(absl::StrCat("segmentation output has ", map.scores.size(),
                                                   " values for ", map.classes, "x", map.height,
                                                   "x", map.width));
  }
  if (transform.original_width < 1 || transform.original_height < 1 || !(transform.scale_x > 0) ||
      !(transform.scale_y > 0)) {
    return absl::InvalidArgumentError("segmentation needs the image's size and transform");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSegmentationOptions(const SegmentationOptions& options, int num_classes) {
  if (!(options.min_score >= 0.0f && options.min_score <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_score is ", options.min_score, "; it must be in [0, 1]"));
  }
  if (options.background_class < 0 || options.background_class >= num_classes) {
    return absl::InvalidArgumentError(absl::StrCat("background_class ", options.background_class,
                                                   " does not exist (the model has ", num_classes,
                                                   " classes)"));
  }
  if (options.min_score > 0.0f && options.activation == ScoreActivation::kNone) {
    return absl::InvalidArgumentError(
        "min_score needs probabilities: set score_activation to softmax or sigmoid");
  }
  return absl::OkStatus();
}

absl::StatusOr<SegmentationResult> SegmentScores(const ScoreMap& map,
                                                 const ImageTransform& transform,
                                                 const SegmentationOptions& options,
                                                 const std::vector<int>& probability_classes) {
  if (absl::Status s = CheckMap(map, transform); !s.ok()) return s;
  for (const int c : probability_classes) {
    if (c < 0 || c >= map.classes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "probability class ", c, " does not exist (the model has ", map.classes, " classes)"));
    }
  }
  const int rows = transform.original_height;
  const int cols = transform.original_width;
  const std::vector<Tap> ys =
      Taps(rows, transform.scale_y, transform.offset_y, map.input_height, map.height);
  const std::vector<Tap> xs =
      Taps(cols, transform.scale_x, transform.offset_x, map.input_width, map.width);

  SegmentationResult out;
  const bool wide = map.classes > 256;
  out.mask.create(rows, cols, wide ? CV_16U : CV_8U);
  out.pixels_per_class.assign(static_cast<size_t>(map.classes), 0);
  for (size_t k = 0; k < probability_classes.size(); ++k) {
    out.probabilities.emplace_back(rows, cols, CV_32F);
  }
  const bool activate = options.min_score > 0.0f || !probability_classes.empty();
  const size_t plane = static_cast<size_t>(map.height) * map.width;
  // Scores of one output row pair blended for the current original row,
  // [classes][width]; recomputed only when the row's tap changes.
  std::vector<float> blended(static_cast<size_t>(map.classes) * map.width);
  std::vector<float> pixel(static_cast<size_t>(map.classes));
  const Tap* previous = nullptr;
  for (int y = 0; y < rows; ++y) {
    const Tap& ty = ys[static_cast<size_t>(y)];
    if (previous == nullptr || previous->i0 != ty.i0 || previous->w1 != ty.w1) {
      for (int c = 0; c < map.classes; ++c) {
        const float* r0 = map.scores.data() + c * plane + static_cast<size_t>(ty.i0) * map.width;
        const float* r1 = map.scores.data() + c * plane + static_cast<size_t>(ty.i1) * map.width;
        float* dst = blended.data() + static_cast<size_t>(c) * map.width;
        for (int x = 0; x < map.width; ++x) dst[x] = r0[x] + ty.w1 * (r1[x] - r0[x]);
      }
      previous = &ty;
    }
    for (int x = 0; x < cols; ++x) {
      const Tap& tx = xs[static_cast<size_t>(x)];
      float best = -std::numeric_limits<float>::infinity();
      int label = 0;
      for (int c = 0; c < map.classes; ++c) {
        const float* row = blended.data() + static_cast<size_t>(c) * map.width;
        const float v = row[tx.i0] + tx.w1 * (row[tx.i1] - row[tx.i0]);
        pixel[static_cast<size_t>(c)] = v;
        if (v > best) {
          best = v;
          label = c;
        }
      }
      if (activate) {
        Activate(options.activation, best, pixel);
        if (options.min_score > 0.0f && pixel[static_cast<size_t>(label)] < options.min_score) {
          label = options.background_class;
        }
        for (size_t k = 0; k < probability_classes.size(); ++k) {
          out.probabilities[k].at<float>(y, x) = pixel[static_cast<size_t>(probability_classes[k])];
        }
      }
      if (wide) {
        out.mask.at<uint16_t>(y, x) = static_cast<uint16_t>(label);
      } else {
        out.mask.at<uint8_t>(y, x) = static_cast<uint8_t>(label);
      }
      ++out.pixels_per_class[static_cast<size_t>(label)];
    }
  }
  return out;
}

}  // namespace rectifier::imaging
