// Segmentation postprocessing: per-pixel class scores at the model's output
// resolution -> a label mask (and probability maps) in original-image pixels.
#ifndef RECTIFIER_SERVER_IMAGING_SEGMENTATION_H_
#define RECTIFIER_SERVER_IMAGING_SEGMENTATION_H_

#include <cstdint>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/imaging/classification.h"
#include "server/imaging/transform.h"

namespace rectifier::imaging {

struct SegmentationOptions {
  ScoreActivation activation = ScoreActivation::kSoftmax;  // for probabilities and min_score
  float min_score = 0.0f;  // best class below this -> background_class; 0: off
  int background_class = 0;
  std::vector<std::string> labels;  // Optional; index = class id.
};

absl::Status ValidateSegmentationOptions(const SegmentationOptions& options, int num_classes);

// One batch item of a segmentation output, row-major [classes, height, width]
// of scores over the model's input (input_width x input_height pixels; the
// output may be smaller by a stride, e.g. 1/8 of the input).
struct ScoreMap {
  absl::Span<const float> scores;
  int classes = 0;
  int height = 0;
  int width = 0;
  int input_width = 0;
  int input_height = 0;
};

struct SegmentationResult {
  // transform.original_height x original_width: CV_8U, or CV_16U above 256
  // classes. Each pixel is a class id.
  cv::Mat mask;
  std::vector<int64_t> pixels_per_class;  // indexed by class id
  // One CV_32F map per requested class, probabilities after the activation.
  std::vector<cv::Mat> probabilities;
};

// Each original pixel's centre is mapped through `transform` into the input,
// then to the output grid; the class scores there are interpolated
// bilinearly (border pixels repeat, so a region the preprocessing cropped
// away takes the nearest seen scores) and the best class wins (ties: lower
// id). `probability_classes` (ids < classes) are also returned as maps.
// INVALID_ARGUMENT when the sizes do not fit.
absl::StatusOr<SegmentationResult> SegmentScores(const ScoreMap& map,
                                                 const ImageTransform& transform,
                                                 const SegmentationOptions& options,
                                                 const std::vector<int>& probability_classes);

}  // namespace rectifier::imaging

#endif  // RECTIFIER_SERVER_IMAGING_SEGMENTATION_H_
