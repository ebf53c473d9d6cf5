#include "server/imaging/config.h"

#include <gmock/gmock.h>
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

namespace rectifier::imaging {
namespace {

using ::testing::HasSubstr;

inference::ModelConfig Parse(const std::string& text) {
  inference::ModelConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  return config;
}

TEST(ImagingConfigTest, PreprocessingDefaults) {
  auto o = PreprocessOptionsFromConfig(inference::PreprocessingConfig(), 224, 224, 3);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->color, ColorFormat::kRgb);
  EXPECT_EQ(o->resize, ResizeMode::kStretch);
  EXPECT_EQ(o->pad_value, 114);
  EXPECT_FLOAT_EQ(o->scale, 1.0f / 255.0f);
  EXPECT_EQ(o->layout, Layout::kNchw);
}

TEST(ImagingConfigTest, PreprocessingFromTextFormat) {
  const auto config = Parse(R"pb(
    name: "yolo"
    preprocessing {
      color_format: COLOR_BGR
      resize_mode: RESIZE_LETTERBOX
      interpolation: INTERPOLATION_AREA
      pad_value: 0
      mean: [ 0.485, 0.456, 0.406 ]
      stddev: 0.5
      sixteen_bit: SIXTEEN_BIT_WINDOW
      window_center: 2000
      window_width: 4000
      layout: LAYOUT_NHWC
      dicom_window: DICOM_WINDOW_FIXED
      dicom_window_center: 40
      dicom_window_width: 400
    })pb");
  auto o = PreprocessOptionsFromConfig(config.preprocessing(), 640, 480, 3);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->width, 640);
  EXPECT_EQ(o->height, 480);
  EXPECT_EQ(o->color, ColorFormat::kBgr);
  EXPECT_EQ(o->resize, ResizeMode::kLetterbox);
  EXPECT_EQ(o->interpolation, Interpolation::kArea);
  EXPECT_EQ(o->pad_value, 0);  // Set explicitly: not the default 114.
  EXPECT_FLOAT_EQ(o->mean[2], 0.406f);
  EXPECT_FLOAT_EQ(o->std[1], 0.5f);
  EXPECT_EQ(o->sixteen_bit, SixteenBitMode::kWindow);
  EXPECT_EQ(o->window_width, 4000);
  EXPECT_EQ(o->layout, Layout::kNhwc);
  auto d = DicomOptionsFromConfig(config.preprocessing());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->window, WindowSource::kCaller);
  EXPECT_EQ(d->window_center, 40);
  EXPECT_EQ(d->window_width, 400);
}

TEST(ImagingConfigTest, PreprocessingErrorsNameTheField) {
  inference::PreprocessingConfig c;
  c.add_mean(1);
  c.add_mean(2);
  EXPECT_THAT(PreprocessOptionsFromConfig(c, 224, 224, 3).status().message(),
              HasSubstr("preprocessing.mean"));
  c.clear_mean();
  c.add_stddev(0);
  EXPECT_THAT(PreprocessOptionsFromConfig(c, 224, 224, 3).status().message(),
              HasSubstr("preprocessing.stddev"));
  c.clear_stddev();
  c.set_pad_value(300);
  EXPECT_THAT(PreprocessOptionsFromConfig(c, 224, 224, 3).status().message(),
              HasSubstr("preprocessing.pad_value"));
  c.clear_pad_value();
  c.set_sixteen_bit(inference::PreprocessingConfig::SIXTEEN_BIT_WINDOW);
  EXPECT_THAT(PreprocessOptionsFromConfig(c, 224, 224, 3).status().message(),
              HasSubstr("preprocessing.window_width"));
  EXPECT_THAT(
      PreprocessOptionsFromConfig(inference::PreprocessingConfig(), 224, 224, 4).status().message(),
      HasSubstr("channels"));
}

// RESIZE_KEEP_SIZE: models with dynamic height and width keep each image's
// aspect within a bound, padded to the stride.
TEST(ImagingConfigTest, KeepSizeForDynamicHeightAndWidth) {
  inference::PreprocessingConfig c;
  c.set_resize_mode(inference::PreprocessingConfig::RESIZE_KEEP_SIZE);
  c.set_long_side(640);
  auto o = PreprocessOptionsFromConfig(c, -1, -1, 3);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->keep_size.enabled);
  EXPECT_EQ(o->resize, ResizeMode::kLetterbox);
  EXPECT_EQ(o->keep_size.pad_to_multiple, 32);
  EXPECT_EQ(o->width, 640);  // no max_input_dims: long_side bounds both sides
  EXPECT_EQ(o->height, 640);
  EXPECT_THAT(DescribePreprocessing(*o), HasSubstr("keep size (long side 640, padded to x32"));
  // 1280x720 -> 640x360 -> padded to 640x384; the portrait one the other way.
  PreprocessOptions image = ForImage(*o, 1280, 720);
  EXPECT_EQ(image.width, 640);
  EXPECT_EQ(image.height, 384);
  image = ForImage(*o, 720, 1280);
  EXPECT_EQ(image.width, 384);
  EXPECT_EQ(image.height, 640);
  // Small images scale up to long_side too.
  image = ForImage(*o, 100, 50);
  EXPECT_EQ(image.width, 640);
  EXPECT_EQ(image.height, 320);

  // Without long_side, the image's own size within max_input_dims (rounded
  // down to the stride first, so padding never passes it).
  c.clear_long_side();
  c.set_pad_to_multiple(16);
  o = PreprocessOptionsFromConfig(c, -1, -1, 3, /*max_width=*/1000, /*max_height=*/500);
  ASSERT_TRUE(o.ok()) << o.status();
  image = ForImage(*o, 300, 201);
  EXPECT_EQ(image.width, 304);
  EXPECT_EQ(image.height, 208);
  image = ForImage(*o, 4000, 1000);  // bounded by the width: x0.248
  EXPECT_EQ(image.width, 992);
  EXPECT_EQ(image.height, 256);
  image = ForImage(*o, 1, 1);
  EXPECT_EQ(image.width, 16);
  EXPECT_EQ(image.height, 16);

  // Refusals name the field.
  EXPECT_THAT(PreprocessOptionsFromConfig(c, -1, -1, 3).status().message(),
              HasSubstr("RESIZE_KEEP_SIZE needs long_side or engine.max_input_dims"));
  EXPECT_THAT(PreprocessOptionsFromConfig(c, 224, 224, 3).status().message(),
              HasSubstr("RESIZE_KEEP_SIZE needs a model input with dynamic height and width"));
  c.set_pad_to_multiple(64);
  EXPECT_THAT(PreprocessOptionsFromConfig(c, -1, -1, 3, 32, 32).status().message(),
              HasSubstr("preprocessing.pad_to_multiple: is 64, over"));
  inference::PreprocessingConfig letterbox;
  letterbox.set_resize_mode(inference::PreprocessingConfig::RESIZE_LETTERBOX);
  EXPECT_THAT(PreprocessOptionsFromConfig(letterbox, -1, -1, 3).status().message(),
              HasSubstr("needs a fixed height and width, or preprocessing { resize_mode: "
                        "RESIZE_KEEP_SIZE }"));
  letterbox.set_long_side(320);
  EXPECT_THAT(PreprocessOptionsFromConfig(letterbox, 320, 320, 3).status().message(),
              HasSubstr("apply to RESIZE_KEEP_SIZE only"));
}

TEST(ImagingConfigTest, SegmentationPostprocessing) {
  const auto config = Parse(R"pb(
    postprocessing {
      task: TASK_SEGMENTATION
      score_activation: SCORE_ACTIVATION_SIGMOID
      labels: [ "background", "lesion" ]
      segmentation { min_score: 0.4 background_class: 0 }
    })pb");
  auto s = SegmentationOptionsFromConfig(config.postprocessing());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->activation, ScoreActivation::kSigmoid);
  EXPECT_FLOAT_EQ(s->min_score, 0.4f);
  EXPECT_EQ(s->labels.size(), 2u);
  // A segmentation block alone means the task.
  const auto implied = Parse(R"pb(postprocessing { segmentation {} })pb");
  EXPECT_TRUE(SegmentationOptionsFromConfig(implied.postprocessing()).ok());
  EXPECT_THAT(SegmentationOptionsFromConfig(Parse("").postprocessing()).status().message(),
              HasSubstr("postprocessing.task"));
  inference::PostprocessingConfig bad = config.postprocessing();
  bad.mutable_segmentation()->set_min_score(2);
  EXPECT_THAT(SegmentationOptionsFromConfig(bad).status().message(),
              HasSubstr("postprocessing.segmentation.min_score"));
  bad.mutable_segmentation()->set_min_score(0.5f);
  bad.set_score_activation(inference::PostprocessingConfig::SCORE_ACTIVATION_NONE);
  EXPECT_THAT(SegmentationOptionsFromConfig(bad).status().message(),
              HasSubstr("needs probabilities"));
}

TEST(ImagingConfigTest, Postprocessing) {
  const auto config = Parse(R"pb(
    postprocessing {
      task: TASK_DETECTION
      score_threshold: 0
      iou_threshold: 0.6
      max_detections: 50
      class_filter: [ 0, 2 ]
      labels: [ "car", "person", "sign" ]
    })pb");
  auto d = DetectionOptionsFromConfig(config.postprocessing());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->score_threshold, 0.0f);  // Explicit zero kept.
  EXPECT_FLOAT_EQ(d->iou_threshold, 0.6f);
  EXPECT_EQ(d->max_detections, 50);
  EXPECT_EQ(d->class_filter, (std::vector<int>{0, 2}));
  EXPECT_EQ(d->labels.size(), 3u);
  EXPECT_THAT(ClassificationOptionsFromConfig(config.postprocessing()).status().message(),
              HasSubstr("postprocessing.task"));

  inference::PostprocessingConfig c;
  c.set_task(inference::PostprocessingConfig::TASK_DETECTION);
  auto defaults = DetectionOptionsFromConfig(c);
  ASSERT_TRUE(defaults.ok());
  EXPECT_FLOAT_EQ(defaults->score_threshold, 0.25f);
  EXPECT_FLOAT_EQ(defaults->iou_threshold, 0.45f);
  EXPECT_EQ(defaults->max_detections, 300);
  c.set_iou_threshold(1.5f);
  EXPECT_THAT(DetectionOptionsFromConfig(c).status().message(),
              HasSubstr("postprocessing.iou_threshold"));

  inference::PostprocessingConfig k;
  k.set_task(inference::PostprocessingConfig::TASK_CLASSIFICATION);
  k.set_score_activation(inference::PostprocessingConfig::SCORE_ACTIVATION_SIGMOID);
  k.set_top_k(3);
  auto cls = ClassificationOptionsFromConfig(k);
  ASSERT_TRUE(cls.ok());
  EXPECT_EQ(cls->activation, ScoreActivation::kSigmoid);
  EXPECT_EQ(cls->top_k, 3);
}

TEST(ImagingConfigTest, ScaledDecodeOptions) {
  inference::PreprocessingConfig c;
  c.set_resize_mode(inference::PreprocessingConfig::RESIZE_LETTERBOX);
  auto p = PreprocessOptionsFromConfig(c, 640, 640, 3);
  ASSERT_TRUE(p.ok());
  DecodeOptions d = DecodeOptionsFor(c, *p, 1920, 1080);
  EXPECT_EQ(d.min_short_side, 360);
  EXPECT_EQ(d.min_long_side, 640);
  c.set_disable_scaled_decode(true);
  d = DecodeOptionsFor(c, *p, 1920, 1080);
  EXPECT_EQ(d.min_short_side, 0);
  EXPECT_EQ(d.min_long_side, 0);
}

}  // namespace
}  // namespace rectifier::imaging
