// Detection postprocessing for Ultralytics YOLOv8/YOLO11 outputs: threshold, NMS, un-letterbox.
#ifndef RECTIFIER_SERVER_IMAGING_DETECTION_H_
#define RECTIFIER_SERVER_IMAGING_DETECTION_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/imaging/transform.h"

namespace rectifier::imaging {

struct DetectionOptions {
  float score_threshold = 0.25f;
  float iou_threshold = 0.45f;
  int max_detections = 300;
  // Boxes of different classes never suppress each other unless set.
  bool class_agnostic = false;
  std::vector<int> class_filter;    // Empty: all classes.
  std::vector<std::string> labels;  // Optional; index = class id.
};

struct Box {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

struct Detection {
  Box box;  // Original-image pixels, clamped to the image.
  float score = 0.0f;
  int class_id = 0;
  std::string label;
};

absl::Status ValidateDetectionOptions(const DetectionOptions& options);

float IoU(const Box& a, const Box& b);

// Greedy NMS: indices of kept boxes, by descending score (ties: lower index
// first). Boxes suppress only boxes of the same class (pass all-zero classes
// for class-agnostic NMS); a box is dropped when IoU > iou_threshold with a
// kept one. Stops after max_keep (<= 0: no limit).
// REQUIRES: boxes, scores and classes have the same size; classes >= 0
// (otherwise nothing is kept).
std::vector<int> NonMaxSuppression(const std::vector<Box>& boxes, const std::vector<float>& scores,
                                   const std::vector<int>& classes, float iou_threshold,
                                   int max_keep);

// One batch item of a YOLOv8/YOLO11 head, laid out [4 + num_classes, num_anchors]
// row-major: rows 0..3 are cx, cy, w, h in model-input pixels, the rest class
// scores (already sigmoid). Each anchor keeps its best allowed class (as
// Ultralytics' default single-label NMS). Boxes are mapped through
// `transform` back to original-image pixels and clamped.
absl::StatusOr<std::vector<Detection>> DecodeYoloDetections(absl::Span<const float> output,
                                                            int num_classes, int num_anchors,
                                                            const DetectionOptions& options,
                                                            const ImageTransform& transform);

}  // namespace rectifier::imaging

#endif  // RECTIFIER_SERVER_IMAGING_DETECTION_H_
