// The whole imaging path on one frame: scaled JPEG decode, letterbox, a YOLO
// head built from what the tensor shows, detection mapped back.
#include <gtest/gtest.h>

#include <algorithm>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "server/imaging/decode.h"
#include "server/imaging/detection.h"
#include "server/imaging/preprocess.h"
#include "tests/imaging/test_images.h"

namespace rectifier::imaging {
namespace {

TEST(PipelineTest, BoxInFullHdFrameComesBackInOriginalPixels) {
  cv::Mat frame(1080, 1920, CV_8UC3, cv::Scalar(60, 60, 60));
  const cv::Rect object(600, 300, 400, 400);
  cv::rectangle(frame, object, cv::Scalar(255, 255, 255), cv::FILLED);
  const std::string jpeg = Encode(frame, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 95});

  PreprocessOptions pre;
  pre.width = 640;
  pre.height = 640;
  pre.resize = ResizeMode::kLetterbox;
  auto header = ProbeImageHeader(jpeg);
  ASSERT_TRUE(header.ok()) << header.status();
  const SideBounds bounds = ScaledDecodeBounds(pre, header->width, header->height);
  DecodeOptions dec;
  dec.min_short_side = bounds.min_short_side;
  dec.min_long_side = bounds.min_long_side;
  auto decoded = DecodeImage(jpeg, dec);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->reduction, 2);

  std::vector<float> tensor(PreprocessOutputSize(pre));
  auto transform = Preprocess(decoded->image, pre, absl::MakeSpan(tensor),
                              cv::Size(decoded->original_width, decoded->original_height));
  ASSERT_TRUE(transform.ok()) << transform.status();
  // 1920x1080 -> 640x360, pad 140 top and bottom.
  EXPECT_DOUBLE_EQ(transform->scale_x, 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(transform->offset_y, 140.0);

  // The object's extent in the tensor, thresholded halfway between the
  // background and the object (bilinear edges are symmetric around it).
  const float mid = (60.0f + 255.0f) / 2.0f / 255.0f;
  float x1 = 640, y1 = 640, x2 = 0, y2 = 0;
  for (int y = 0; y < 640; ++y) {
    for (int x = 0; x < 640; ++x) {
      if (tensor[y * 640 + x] > mid) {
        x1 = std::min<float>(x1, x);
        y1 = std::min<float>(y1, y);
        x2 = std::max<float>(x2, x + 1);
        y2 = std::max<float>(y2, y + 1);
      }
    }
  }
  // A YOLO head [4 + 2, 3] whose anchor 1 predicts exactly that box.
  std::vector<float> head(6 * 3, 0.0f);
  head[1] = (x1 + x2) / 2;
  head[3 + 1] = (y1 + y2) / 2;
  head[6 + 1] = x2 - x1;
  head[9 + 1] = y2 - y1;
  head[(4 + 1) * 3 + 1] = 0.9f;
  auto detections = DecodeYoloDetections(head, 2, 3, DetectionOptions(), *transform);
  ASSERT_TRUE(detections.ok()) << detections.status();
  ASSERT_EQ(detections->size(), 1u);
  const Box& b = (*detections)[0].box;
  // Within one model-input pixel (3 original pixels at this scale).
  EXPECT_NEAR(b.x1, object.x, 3.0);
  EXPECT_NEAR(b.y1, object.y, 3.0);
  EXPECT_NEAR(b.x2, object.x + object.width, 3.0);
  EXPECT_NEAR(b.y2, object.y + object.height, 3.0);
}

}  // namespace
}  // namespace rectifier::imaging
