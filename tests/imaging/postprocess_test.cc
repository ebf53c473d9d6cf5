#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <opencv2/dnn.hpp>
#include <random>
#include <vector>

#include "server/imaging/classification.h"
#include "server/imaging/detection.h"

namespace rectifier::imaging {
namespace {

TEST(ClassificationTest, SoftmaxTopK) {
  ClassificationOptions o;
  o.top_k = 2;
  o.labels = {"a", "b", "c"};
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  auto r = Classify(logits, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  const double sum = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_EQ((*r)[0].class_id, 2);
  EXPECT_EQ((*r)[0].label, "c");
  EXPECT_NEAR((*r)[0].score, std::exp(3.0) / sum, 1e-6);
  EXPECT_EQ((*r)[1].class_id, 1);
  EXPECT_NEAR((*r)[1].score, std::exp(2.0) / sum, 1e-6);
}

TEST(ClassificationTest, SigmoidMultiLabelThreshold) {
  ClassificationOptions o;
  o.activation = ScoreActivation::kSigmoid;
  o.top_k = 0;
  o.threshold = 0.5f;
  auto r = Classify(std::vector<float>{2.0f, -1.0f, 0.5f, -3.0f}, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].class_id, 0);
  EXPECT_NEAR((*r)[0].score, 1.0 / (1.0 + std::exp(-2.0)), 1e-6);
  EXPECT_EQ((*r)[1].class_id, 2);
  EXPECT_NEAR((*r)[1].score, 1.0 / (1.0 + std::exp(-0.5)), 1e-6);
}

TEST(ClassificationTest, Errors) {
  ClassificationOptions o;
  o.labels = {"only one"};
  EXPECT_EQ(Classify(std::vector<float>{1, 2}, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Classify(std::vector<float>{}, ClassificationOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ClassificationTest, ProbabilityThresholdsOutsideZeroOneAreRefused) {
  for (ScoreActivation activation : {ScoreActivation::kSoftmax, ScoreActivation::kSigmoid}) {
    for (float threshold : {-0.1f, 1.5f}) {
      ClassificationOptions o;
      o.activation = activation;
      o.threshold = threshold;
      const absl::Status s = ValidateClassificationOptions(o);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << threshold;
      EXPECT_NE(s.message().find("is outside [0, 1]"), std::string::npos) << s.message();
    }
    ClassificationOptions edge;
    edge.activation = activation;
    edge.threshold = 1.0f;
    EXPECT_TRUE(ValidateClassificationOptions(edge).ok());
  }
  // Raw scores (no activation) may be thresholded anywhere.
  ClassificationOptions raw;
  raw.activation = ScoreActivation::kNone;
  raw.threshold = 2.5f;
  EXPECT_TRUE(ValidateClassificationOptions(raw).ok());
}

TEST(ClassificationTest, NanRanksLast) {
  ClassificationOptions o;
  o.activation = ScoreActivation::kNone;
  o.top_k = 3;
  auto r = Classify(std::vector<float>{0.2f, std::nanf(""), 0.7f}, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);  // NaN becomes -inf, under the threshold 0.
  EXPECT_EQ((*r)[0].class_id, 2);
  EXPECT_EQ((*r)[1].class_id, 0);
}

TEST(NmsTest, ViolatedPreconditionsKeepNothing) {
  const std::vector<Box> boxes = {{0, 0, 1, 1}};
  EXPECT_TRUE(NonMaxSuppression(boxes, {0.5f}, {-1}, 0.5f, 0).empty());
  EXPECT_TRUE(NonMaxSuppression(boxes, {}, {0}, 0.5f, 0).empty());
}

TEST(NmsTest, ConstructedBoxes) {
  const std::vector<Box> boxes = {{0, 0, 10, 10}, {1, 1, 11, 11}, {1, 1, 11, 11}, {20, 20, 30, 30}};
  const std::vector<float> scores = {0.9f, 0.8f, 0.7f, 0.6f};
  const std::vector<int> classes = {0, 0, 1, 0};
  EXPECT_NEAR(IoU(boxes[0], boxes[1]), 81.0 / 119.0, 1e-6);
  EXPECT_EQ(NonMaxSuppression(boxes, scores, classes, 0.5f, 0), (std::vector<int>{0, 2, 3}));
  // Class-agnostic: box 2 now overlaps box 0.
  EXPECT_EQ(NonMaxSuppression(boxes, scores, {0, 0, 0, 0}, 0.5f, 0), (std::vector<int>{0, 3}));
  // IoU 0.68 is not above 0.7: nothing suppressed, max_keep caps.
  EXPECT_EQ(NonMaxSuppression(boxes, scores, classes, 0.7f, 3), (std::vector<int>{0, 1, 2}));
}

// Brute force: a box survives iff no higher-scored survivor of its class
// overlaps it by more than the threshold, from the full IoU matrix.
std::vector<int> ReferenceNms(const std::vector<Box>& boxes, const std::vector<float>& scores,
                              const std::vector<int>& classes, float thr) {
  const int n = static_cast<int>(boxes.size());
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  std::vector<bool> alive(n, true);
  for (int i = 0; i < n; ++i) {
    if (!alive[order[i]]) continue;
    for (int j = i + 1; j < n; ++j) {
      const int a = order[i];
      const int b = order[j];
      if (classes[a] == classes[b] && IoU(boxes[a], boxes[b]) > thr) alive[b] = false;
    }
  }
  std::vector<int> keep;
  for (int i : order) {
    if (alive[i]) keep.push_back(i);
  }
  return keep;
}

TEST(NmsTest, MatchesBruteForceAndOpenCvOnRandomBoxes) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> pos(0, 600), size(5, 120), score(0.01f, 1.0f);
  for (int trial = 0; trial < 5; ++trial) {
    const int n = 2000;
    std::vector<Box> boxes;
    std::vector<float> scores;
    std::vector<int> classes;
    std::vector<cv::Rect2d> rects;
    for (int i = 0; i < n; ++i) {
      const float x = pos(rng), y = pos(rng), w = size(rng), h = size(rng);
      const int c = static_cast<int>(rng() % 5);
      boxes.push_back({x, y, x + w, y + h});
      scores.push_back(score(rng));
      classes.push_back(c);
      // The batched trick: offset each class far apart, then plain NMS.
      rects.emplace_back(x + c * 10000.0, y, w, h);
    }
    std::vector<int> ours = NonMaxSuppression(boxes, scores, classes, 0.45f, 0);
    EXPECT_EQ(ours, ReferenceNms(boxes, scores, classes, 0.45f));
    std::vector<int> opencv;
    cv::dnn::NMSBoxes(rects, scores, 0.0f, 0.45f, opencv);
    std::sort(opencv.begin(), opencv.end());
    std::sort(ours.begin(), ours.end());
    EXPECT_EQ(ours, opencv);
  }
}

// [4 + nc, N] output builder.
struct YoloOutput {
  int nc, n;
  std::vector<float> data;
  YoloOutput(int classes, int anchors)
      : nc(classes), n(anchors), data(static_cast<size_t>(4 + classes) * anchors, 0.0f) {}
  void Set(int a, float cx, float cy, float w, float h, int c, float s) {
    data[a] = cx;
    data[n + a] = cy;
    data[2 * n + a] = w;
    data[3 * n + a] = h;
    data[(4 + c) * n + a] = s;
  }
};

TEST(DetectionTest, ThresholdNmsFilterAndUnletterbox) {
  YoloOutput y(3, 6);
  y.Set(0, 100, 100, 40, 20, 1, 0.9f);   // Kept.
  y.Set(1, 102, 101, 40, 20, 1, 0.8f);   // Suppressed by 0.
  y.Set(2, 300, 200, 40, 20, 0, 0.1f);   // Below threshold.
  y.Set(3, 5, 100, 20, 20, 0, 0.7f);     // Clamped at the left edge.
  y.Set(4, 200, 150, 10, 10, 2, 0.95f);  // Filtered class.
  y.Set(5, 102, 101, 40, 20, 0, 0.6f);   // Other class: not suppressed by 0.
  // Letterbox 640x480 -> 320x320: scale 0.5, pad top 40.
  ImageTransform t{0.5, 0.5, 0.0, 40.0, 640, 480};
  DetectionOptions o;
  o.class_filter = {0, 1};
  o.labels = {"car", "person", "sign"};
  auto r = DecodeYoloDetections(y.data, y.nc, y.n, o, t);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 3u);
  const Detection& d = (*r)[0];
  EXPECT_EQ(d.class_id, 1);
  EXPECT_EQ(d.label, "person");
  EXPECT_FLOAT_EQ(d.score, 0.9f);
  EXPECT_FLOAT_EQ(d.box.x1, 160.0f);  // (100 - 20) / 0.5
  EXPECT_FLOAT_EQ(d.box.y1, 100.0f);  // (90 - 40) / 0.5
  EXPECT_FLOAT_EQ(d.box.x2, 240.0f);
  EXPECT_FLOAT_EQ(d.box.y2, 140.0f);
  EXPECT_EQ((*r)[1].class_id, 0);
  EXPECT_FLOAT_EQ((*r)[1].box.x1, 0.0f);   // -5 / 0.5 clamped
  EXPECT_FLOAT_EQ((*r)[1].box.x2, 30.0f);  // 15 / 0.5
  EXPECT_EQ((*r)[2].class_id, 0);
  EXPECT_FLOAT_EQ((*r)[2].score, 0.6f);

  o.class_agnostic = true;
  r = DecodeYoloDetections(y.data, y.nc, y.n, o, t);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 2u);
}

TEST(DetectionTest, ThousandsOfCandidates) {
  // 8400 anchors x 80 classes, every anchor above threshold.
  const int nc = 80, n = 8400;
  YoloOutput y(nc, n);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> pos(0, 640), size(10, 200), score(0.3f, 1.0f);
  for (int a = 0; a < n; ++a) {
    y.Set(a, pos(rng), pos(rng), size(rng), size(rng), static_cast<int>(rng() % nc), score(rng));
  }
  DetectionOptions o;
  o.max_detections = 300;
  ImageTransform t{1.0, 1.0, 0.0, 0.0, 640, 640};
  auto r = DecodeYoloDetections(y.data, nc, n, o, t);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 300u);
  for (size_t i = 1; i < r->size(); ++i) EXPECT_GE((*r)[i - 1].score, (*r)[i].score);
  for (size_t i = 0; i < r->size(); ++i) {
    for (size_t j = i + 1; j < r->size(); ++j) {
      if ((*r)[i].class_id != (*r)[j].class_id) continue;
      // Clamping can only shrink boxes; check on the clamped ones anyway.
      EXPECT_LE(IoU((*r)[i].box, (*r)[j].box), 0.45f + 1e-6f);
    }
  }
}

TEST(DetectionTest, RejectsShapeMismatch) {
  std::vector<float> data(10);
  EXPECT_EQ(DecodeYoloDetections(data, 3, 2, DetectionOptions(), ImageTransform()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rectifier::imaging
