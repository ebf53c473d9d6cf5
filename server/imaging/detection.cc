#include "server/imaging/detection.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"

namespace rectifier::imaging {

absl::Status ValidateDetectionOptions(const DetectionOptions& options) {
  if (!(options.score_threshold >= 0.0f && options.score_threshold <= 1.0f)) {
    return absl::InvalidArgumentError("postprocessing: score_threshold must be in [0, 1]");
  }
  if (!(options.iou_threshold >= 0.0f && options.iou_threshold <= 1.0f)) {
    return absl::InvalidArgumentError("postprocessing: iou_threshold must be in [0, 1]");
  }
  if (options.max_detections <= 0) {
    return absl::InvalidArgumentError("postprocessing: max_detections must be > 0");
  }
  for (int c : options.class_filter) {
    if (c < 0) return absl::InvalidArgumentError("postprocessing: class_filter ids must be >= 0");
  }
  return absl::OkStatus();
}

float IoU(const Box& a, const Box& b) {
  const float iw = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  const float ih = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  if (iw <= 0.0f || ih <= 0.0f) return 0.0f;
  const float inter = iw * ih;
  const float uni = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
  return uni > 0.0f ? inter / uni : 0.0f;
}

std::vector<int> NonMaxSuppression(const std::vector<Box>& boxes, const std::vector<float>& scores,
                                   const std::vector<int>& classes, float iou_threshold,
                                   int max_keep) {
  const int n = static_cast<int>(boxes.size());
  if (scores.size() != boxes.size() || classes.size() != boxes.size() ||
      std::any_of(classes.begin(), classes.end(), [](int c) { return c < 0; })) {
    return {};  // Violated REQUIRES; nothing sensible to keep.
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  // Kept boxes per class, so a candidate is compared only with its own class:
  // with 80 classes that is ~80x fewer IoU evaluations than one flat list.
  const int num_classes = n == 0 ? 0 : *std::max_element(classes.begin(), classes.end()) + 1;
  std::vector<std::vector<Box>> kept_by_class(num_classes);
  std::vector<int> keep;
  for (int i : order) {
    if (max_keep > 0 && static_cast<int>(keep.size()) >= max_keep) break;
    std::vector<Box>& kept = kept_by_class[classes[i]];
    const Box& box = boxes[i];
    bool suppressed = false;
    for (const Box& k : kept) {
      if (IoU(box, k) > iou_threshold) {
        suppressed = true;
        break;
      }
    }
    if (suppressed) continue;
    kept.push_back(box);
    keep.push_back(i);
  }
  return keep;
}

absl::StatusOr<std::vector<Detection>> DecodeYoloDetections(absl::Span<const float> output,
                                                            int num_classes, int num_anchors,
                                                            const DetectionOptions& options,
                                                            const ImageTransform& transform) {
  RETURN_IF_ERROR(ValidateDetectionOptions(options));
  if (num_classes <= 0 || num_anchors <= 0) {
    return absl::InvalidArgumentError("detection: need at least one class and one anchor");
  }
  const int64_t expected = int64_t{4 + num_classes} * num_anchors;
  if (static_cast<int64_t>(output.size()) != expected) {
    return absl::InvalidArgumentError(absl::StrCat("detection: output has ", output.size(),
                                                   " values, expected (4 + ", num_classes, ") x ",
                                                   num_anchors));
  }
  if (!options.labels.empty() && static_cast<int>(options.labels.size()) != num_classes) {
    return absl::InvalidArgumentError(absl::StrCat("detection: ", options.labels.size(),
                                                   " labels for ", num_classes, " classes"));
  }
  if (!(transform.scale_x > 0) || !(transform.scale_y > 0)) {
    return absl::InvalidArgumentError("detection: transform scale must be > 0");
  }
  std::vector<bool> allowed(num_classes, options.class_filter.empty());
  for (int c : options.class_filter) {
    if (c < num_classes) allowed[c] = true;
  }
  // Best class per anchor, walking class rows so memory is read sequentially
  // (the layout is class-major).
  const float* data = output.data();
  std::vector<float> best(num_anchors, -1.0f);
  std::vector<int> best_class(num_anchors, 0);
  for (int c = 0; c < num_classes; ++c) {
    if (!allowed[c]) continue;
    const float* row = data + int64_t{4 + c} * num_anchors;
    float* best_data = best.data();
    int* class_data = best_class.data();
    // Written without branches (max + a select mask) so GCC vectorizes it:
    // 3.5x faster than the if-version on 8400 x 80 (bench/imaging).
    for (int a = 0; a < num_anchors; ++a) {
      const float v = row[a];
      const float b = best_data[a];
      const int mask = -static_cast<int>(v > b);
      best_data[a] = v > b ? v : b;
      class_data[a] = (class_data[a] & ~mask) | (c & mask);
    }
  }
  std::vector<Box> boxes;
  std::vector<float> scores;
  std::vector<int> classes;
  std::vector<int> anchors;
  for (int a = 0; a < num_anchors; ++a) {
    // NaN scores fail this comparison and are dropped.
    if (!(best[a] >= options.score_threshold) || best[a] < 0.0f) continue;
    const float cx = data[a];
    const float cy = data[num_anchors + a];
    const float w = data[2 * num_anchors + a];
    const float h = data[3 * num_anchors + a];
    if (!std::isfinite(cx) || !std::isfinite(cy) || !std::isfinite(w) || !std::isfinite(h)) {
      continue;
    }
    boxes.push_back({cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2});
    scores.push_back(best[a]);
    classes.push_back(options.class_agnostic ? 0 : best_class[a]);
    anchors.push_back(a);
  }
  const std::vector<int> keep =
      NonMaxSuppression(boxes, scores, classes, options.iou_threshold, options.max_detections);
  std::vector<Detection> result;
  result.reserve(keep.size());
  for (int i : keep) {
    const Box& b = boxes[i];
    Detection d;
    d.box.x1 = static_cast<float>(transform.ClampX(transform.ToOriginalX(b.x1)));
    d.box.y1 = static_cast<float>(transform.ClampY(transform.ToOriginalY(b.y1)));
    d.box.x2 = static_cast<float>(transform.ClampX(transform.ToOriginalX(b.x2)));
    d.box.y2 = static_cast<float>(transform.ClampY(transform.ToOriginalY(b.y2)));
    d.score = scores[i];
    d.class_id = best_class[anchors[i]];
    if (!options.labels.empty()) d.label = options.labels[d.class_id];
    result.push_back(std::move(d));
  }
  return result;
}

}  // namespace rectifier::imaging
