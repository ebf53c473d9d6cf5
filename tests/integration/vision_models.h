// Tiny image models written from code for the vision API tests: their
// outputs are simple functions of the image, so tests know the answers.
#ifndef RECTIFIER_TESTS_INTEGRATION_VISION_MODELS_H_
#define RECTIFIER_TESTS_INTEGRATION_VISION_MODELS_H_

#include <onnx/onnx_pb.h>

#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "tests/repository/test_models.h"

namespace rectifier::testing {

namespace vision_models_internal {

inline void AddFloatValue(onnx::ValueInfoProto* value, const std::string& name,
                          std::initializer_list<int> dims) {
  value->set_name(name);
  auto* tensor = value->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = tensor->mutable_shape();
  shape->add_dim()->set_dim_param("batch");
  for (int d : dims) shape->add_dim()->set_dim_value(d);
}

inline void AddInitializer(onnx::GraphProto* graph, const std::string& name,
                           std::initializer_list<int64_t> dims, const std::vector<float>& values) {
  onnx::TensorProto* t = graph->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t->add_dims(d);
  for (float v : values) t->add_float_data(v);
}

inline onnx::NodeProto* AddNode(onnx::GraphProto* graph, const std::string& op,
                                std::initializer_list<std::string> inputs,
                                const std::string& output) {
  onnx::NodeProto* node = graph->add_node();
  node->set_op_type(op);
  node->set_name(output);
  for (const std::string& in : inputs) node->add_input(in);
  node->add_output(output);
  return node;
}

}  // namespace vision_models_internal

// "Brightness classifier": x FP32 [batch, 1, 8, 8] (gray, scaled to [0, 1]),
// logits [batch, 2] = [mean - 0.5, 0.5 - mean]: class 0 ("bright") when the
// image's mean is above half scale, class 1 ("dark") otherwise.
inline std::string BrightnessClassifierBytes() {
  using namespace vision_models_internal;  // NOLINT(google-build-using-namespace)
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(13);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("brightness");
  AddFloatValue(graph->add_input(), "image", {1, 8, 8});
  AddFloatValue(graph->add_output(), "logits", {2});
  AddInitializer(graph, "b", {1, 2}, {1.f, -1.f});
  AddInitializer(graph, "c", {2}, {-0.5f, 0.5f});
  AddNode(graph, "GlobalAveragePool", {"image"}, "pooled");
  AddNode(graph, "Flatten", {"pooled"}, "flat");
  AddNode(graph, "Gemm", {"flat", "b", "c"}, "logits");
  return model.SerializeAsString();
}

// "Fixed-box detector" with the Ultralytics head layout: x FP32
// [batch, 3, 32, 32], y [batch, 5, 2] (one class, two anchors). Anchor 0 is
// the box cx=16, cy=16, w=8, h=8 (model-input pixels) with score = the
// image's mean value; anchor 1 is a box with score 0 (never reported).
// The score tells a test which frame a result belongs to.
inline std::string FixedBoxDetectorBytes() {
  using namespace vision_models_internal;  // NOLINT(google-build-using-namespace)
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(13);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("fixed_box");
  AddFloatValue(graph->add_input(), "images", {3, 32, 32});
  AddFloatValue(graph->add_output(), "output0", {5, 2});
  // Rows cx, cy, w, h, score; columns = anchors.
  AddInitializer(graph, "boxes", {5, 2}, {16, 4, 16, 4, 8, 2, 8, 2, 0, 0});
  AddInitializer(graph, "score_mask", {5, 2}, {0, 0, 0, 0, 0, 0, 0, 0, 1, 0});
  onnx::TensorProto* shape = graph->add_initializer();
  shape->set_name("shape");
  shape->set_data_type(onnx::TensorProto::INT64);
  shape->add_dims(3);
  for (int64_t v : {-1, 1, 1}) shape->add_int64_data(v);
  onnx::NodeProto* mean = AddNode(graph, "ReduceMean", {"images"}, "mean");
  onnx::AttributeProto* axes = mean->add_attribute();
  axes->set_name("axes");
  axes->set_type(onnx::AttributeProto::INTS);
  for (int a : {1, 2, 3}) axes->add_ints(a);
  AddNode(graph, "Reshape", {"mean", "shape"}, "mean3");
  AddNode(graph, "Mul", {"mean3", "score_mask"}, "score");
  AddNode(graph, "Add", {"score", "boxes"}, "output0");
  return model.SerializeAsString();
}

// "Size-box detector": x FP32 [batch, 3, height, width] with dynamic height
// and width, y [batch, 5, 1] (one class, one anchor): the box centred in the
// model's input, half its width and height (cx = W/2, cy = H/2, w = W/2,
// h = H/2, from Shape(x)), score = the image's mean. Tests read the input
// size the server chose from the box.
inline std::string SizeBoxDetectorBytes() {
  using namespace vision_models_internal;  // NOLINT(google-build-using-namespace)
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(13);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("size_box");
  onnx::ValueInfoProto* in = graph->add_input();
  in->set_name("images");
  auto* tensor = in->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  tensor->mutable_shape()->add_dim()->set_dim_param("batch");
  tensor->mutable_shape()->add_dim()->set_dim_value(3);
  tensor->mutable_shape()->add_dim()->set_dim_param("height");
  tensor->mutable_shape()->add_dim()->set_dim_param("width");
  onnx::ValueInfoProto* out = graph->add_output();
  out->set_name("output0");
  out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  onnx::TensorProto* idx = graph->add_initializer();
  idx->set_name("whwh");
  idx->set_data_type(onnx::TensorProto::INT64);
  idx->add_dims(4);
  for (int64_t v : {3, 2, 3, 2}) idx->add_int64_data(v);
  onnx::TensorProto* box_shape = graph->add_initializer();
  box_shape->set_name("box_shape");
  box_shape->set_data_type(onnx::TensorProto::INT64);
  box_shape->add_dims(3);
  for (int64_t v : {1, 4, 1}) box_shape->add_int64_data(v);
  onnx::TensorProto* score_shape = graph->add_initializer();
  score_shape->set_name("score_shape");
  score_shape->set_data_type(onnx::TensorProto::INT64);
  score_shape->add_dims(3);
  for (int64_t v : {-1, 1, 1}) score_shape->add_int64_data(v);
  AddInitializer(graph, "half", {4}, {0.5f, 0.5f, 0.5f, 0.5f});
  AddInitializer(graph, "zeros", {1, 4, 1}, {0, 0, 0, 0});
  AddNode(graph, "Shape", {"images"}, "shape");
  AddNode(graph, "Gather", {"shape", "whwh"}, "sides");
  onnx::NodeProto* cast = AddNode(graph, "Cast", {"sides"}, "sides_f");
  onnx::AttributeProto* to = cast->add_attribute();
  to->set_name("to");
  to->set_type(onnx::AttributeProto::INT);
  to->set_i(onnx::TensorProto::FLOAT);
  AddNode(graph, "Mul", {"sides_f", "half"}, "box4");
  AddNode(graph, "Reshape", {"box4", "box_shape"}, "box");
  onnx::NodeProto* mean = AddNode(graph, "ReduceMean", {"images"}, "mean");
  onnx::AttributeProto* axes = mean->add_attribute();
  axes->set_name("axes");
  axes->set_type(onnx::AttributeProto::INTS);
  for (int a : {1, 2, 3}) axes->add_ints(a);
  AddNode(graph, "Reshape", {"mean", "score_shape"}, "score");
  AddNode(graph, "Mul", {"score", "zeros"}, "zero_box");  // [N, 4, 1]
  AddNode(graph, "Add", {"zero_box", "box"}, "boxes");
  onnx::NodeProto* concat = AddNode(graph, "Concat", {"boxes", "score"}, "output0");
  onnx::AttributeProto* axis = concat->add_attribute();
  axis->set_name("axis");
  axis->set_type(onnx::AttributeProto::INT);
  axis->set_i(1);
  return model.SerializeAsString();
}

// "Threshold segmenter": x FP32 [batch, 1, height, width] (gray, scaled to
// [0, 1]) with dynamic height and width, y [batch, 2, height / 2, width / 2]:
// the 2x2 average p of x, scores [0.5 - p, p - 0.5], so class 1 ("bright")
// where the image is brighter than half scale. The half-size output tests
// the mapping back to original pixels: a bright rectangle on even input
// pixels comes back exact.
inline std::string ThresholdSegmenterBytes() {
  using namespace vision_models_internal;  // NOLINT(google-build-using-namespace)
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(13);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("threshold_segmenter");
  onnx::ValueInfoProto* in = graph->add_input();
  in->set_name("x");
  auto* tensor = in->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  tensor->mutable_shape()->add_dim()->set_dim_param("batch");
  tensor->mutable_shape()->add_dim()->set_dim_value(1);
  tensor->mutable_shape()->add_dim()->set_dim_param("height");
  tensor->mutable_shape()->add_dim()->set_dim_param("width");
  onnx::ValueInfoProto* out = graph->add_output();
  out->set_name("y");
  out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  AddInitializer(graph, "half", {1}, {0.5f});
  onnx::NodeProto* pool = AddNode(graph, "AveragePool", {"x"}, "p");
  onnx::AttributeProto* kernel = pool->add_attribute();
  kernel->set_name("kernel_shape");
  kernel->set_type(onnx::AttributeProto::INTS);
  kernel->add_ints(2);
  kernel->add_ints(2);
  onnx::AttributeProto* strides = pool->add_attribute();
  strides->set_name("strides");
  strides->set_type(onnx::AttributeProto::INTS);
  strides->add_ints(2);
  strides->add_ints(2);
  AddNode(graph, "Sub", {"half", "p"}, "dark");
  AddNode(graph, "Sub", {"p", "half"}, "bright");
  onnx::NodeProto* concat = AddNode(graph, "Concat", {"dark", "bright"}, "y");
  onnx::AttributeProto* axis = concat->add_attribute();
  axis->set_name("axis");
  axis->set_type(onnx::AttributeProto::INT);
  axis->set_i(1);
  return model.SerializeAsString();
}

// Writes the vision models with their imaging configs into `root`:
// "brightness" (classification, max batch 8, labels bright/dark, top 2) and
// "fixed_box" (detection, letterboxed, one box "thing"), and the size-box
// detector with dynamic height and width twice: "size_box" (RESIZE_KEEP_SIZE,
// long side 64, padded to x32) and "size_box_native" (each image's own size
// within max_input_dims 128x128, padded to x32), and the threshold segmenter
// twice: "threshold_seg" (each image's own size, gray, padded to x32) and
// "threshold_seg_x2" (long side 80, padded to x16).
inline void WriteVisionModels(const std::filesystem::path& root) {
  WriteFile(root / "brightness" / "1" / "model.onnx", BrightnessClassifierBytes());
  WriteFile(root / "brightness" / "config.pbtxt",
            "max_batch_size: 8\n"
            "dynamic_batching { }\n"
            "preprocessing { color_format: COLOR_GRAY resize_mode: RESIZE_STRETCH }\n"
            "postprocessing { task: TASK_CLASSIFICATION labels: [\"bright\", \"dark\"] "
            "top_k: 2 }\n");
  WriteFile(root / "fixed_box" / "1" / "model.onnx", FixedBoxDetectorBytes());
  WriteFile(root / "fixed_box" / "config.pbtxt",
            "max_batch_size: 4\n"
            "preprocessing { resize_mode: RESIZE_LETTERBOX }\n"
            "postprocessing { task: TASK_DETECTION score_threshold: 0.001 labels: [\"thing\"] "
            "}\n");
  for (const char* name : {"size_box", "size_box_native"}) {
    WriteFile(root / name / "1" / "model.onnx", SizeBoxDetectorBytes());
  }
  const std::string post =
      "postprocessing { task: TASK_DETECTION score_threshold: 0.001 labels: [\"thing\"] }\n";
  WriteFile(root / "size_box" / "config.pbtxt",
            "max_batch_size: 4\n"
            "preprocessing { resize_mode: RESIZE_KEEP_SIZE long_side: 64 pad_to_multiple: 32 }\n" +
                post);
  WriteFile(root / "size_box_native" / "config.pbtxt",
            "max_batch_size: 4\n"
            "engine { max_input_dims { name: \"images\" dims: [ 3, 128, 128 ] } }\n"
            "preprocessing { resize_mode: RESIZE_KEEP_SIZE }\n" +
                post);
  for (const char* name : {"threshold_seg", "threshold_seg_x2"}) {
    WriteFile(root / name / "1" / "model.onnx", ThresholdSegmenterBytes());
  }
  const std::string seg_post =
      "postprocessing { task: TASK_SEGMENTATION labels: [\"dark\", \"bright\"] }\n";
  WriteFile(root / "threshold_seg" / "config.pbtxt",
            "max_batch_size: 4\n"
            "engine { max_input_dims { name: \"x\" dims: [ 1, 128, 128 ] } }\n"
            "preprocessing { color_format: COLOR_GRAY resize_mode: RESIZE_KEEP_SIZE "
            "scale: 0.003921569 }\n" +
                seg_post);
  WriteFile(root / "threshold_seg_x2" / "config.pbtxt",
            "max_batch_size: 4\n"
            "preprocessing { color_format: COLOR_GRAY resize_mode: RESIZE_KEEP_SIZE "
            "long_side: 80 pad_to_multiple: 16 scale: 0.003921569 }\n" +
                seg_post);
}

}  // namespace rectifier::testing

#endif  // RECTIFIER_TESTS_INTEGRATION_VISION_MODELS_H_
