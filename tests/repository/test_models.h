// Tiny ONNX models written from code for repository and service tests.
#ifndef RECTIFIER_TESTS_REPOSITORY_TEST_MODELS_H_
#define RECTIFIER_TESTS_REPOSITORY_TEST_MODELS_H_

#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace rectifier::testing {

// y = x * factor, x and y FP32 [batch, channels, 2, 2] with a dynamic batch
// dimension (or fixed at 1 when !dynamic_batch); with `dynamic_hw`, height and
// width are dynamic too: [batch, channels, height, width].
inline std::string ScaleModelBytes(float factor, int channels = 3, bool dynamic_batch = true,
                                   bool dynamic_hw = false) {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("rectifier-tests");
  model.add_opset_import()->set_version(13);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("scale");
  auto add_value = [&](onnx::ValueInfoProto* value, const char* name) {
    value->set_name(name);
    auto* tensor = value->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(onnx::TensorProto::FLOAT);
    auto* shape = tensor->mutable_shape();
    if (dynamic_batch) {
      shape->add_dim()->set_dim_param("batch");
    } else {
      shape->add_dim()->set_dim_value(1);
    }
    shape->add_dim()->set_dim_value(channels);
    for (const char* side : {"height", "width"}) {
      if (dynamic_hw) {
        shape->add_dim()->set_dim_param(side);
      } else {
        shape->add_dim()->set_dim_value(2);
      }
    }
  };
  add_value(graph->add_input(), "x");
  add_value(graph->add_output(), "y");
  onnx::TensorProto* k = graph->add_initializer();
  k->set_name("k");
  k->set_data_type(onnx::TensorProto::FLOAT);
  k->add_float_data(factor);
  onnx::NodeProto* node = graph->add_node();
  node->set_op_type("Mul");
  node->set_name("scale");
  node->add_input("x");
  node->add_input("k");
  node->add_output("y");
  return model.SerializeAsString();
}

// y = Relu(Conv(x, w)) with a 1x1 convolution, x FP32 [batch, 2, 3, 3],
// y [batch, 2, 3, 3]: the smallest graph an activation fuses into.
inline std::string ConvReluModelBytes() {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(13);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("conv_relu");
  for (auto* value : {graph->add_input(), graph->add_output()}) {
    value->set_name(value == &graph->input(0) ? "x" : "y");
    auto* tensor = value->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(onnx::TensorProto::FLOAT);
    auto* shape = tensor->mutable_shape();
    shape->add_dim()->set_dim_param("batch");
    for (int d : {2, 3, 3}) shape->add_dim()->set_dim_value(d);
  }
  onnx::TensorProto* w = graph->add_initializer();
  w->set_name("w");
  w->set_data_type(onnx::TensorProto::FLOAT);
  for (int d : {2, 2, 1, 1}) w->add_dims(d);
  for (float v : {1.f, -1.f, 0.5f, 2.f}) w->add_float_data(v);
  onnx::NodeProto* conv = graph->add_node();
  conv->set_op_type("Conv");
  conv->set_name("conv");
  conv->add_input("x");
  conv->add_input("w");
  conv->add_output("c");
  onnx::NodeProto* relu = graph->add_node();
  relu->set_op_type("Relu");
  relu->set_name("relu");
  relu->add_input("c");
  relu->add_output("y");
  return model.SerializeAsString();
}

// A deliberately slow model for drain tests: `layers` 3x3 convolutions of
// 32 channels on a 96x96 image (about 0.17 GFLOP each), sharing one weight.
// x FP32 [batch, 32, 96, 96] -> y of the same shape.
inline std::string SlowModelBytes(int layers) {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(13);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("slow");
  const auto add_value = [](onnx::ValueInfoProto* value, const char* name) {
    value->set_name(name);
    auto* tensor = value->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(onnx::TensorProto::FLOAT);
    auto* shape = tensor->mutable_shape();
    shape->add_dim()->set_dim_param("batch");
    for (int d : {32, 96, 96}) shape->add_dim()->set_dim_value(d);
  };
  add_value(graph->add_input(), "x");
  add_value(graph->add_output(), "y");
  onnx::TensorProto* w = graph->add_initializer();
  w->set_name("w");
  w->set_data_type(onnx::TensorProto::FLOAT);
  for (int d : {32, 32, 3, 3}) w->add_dims(d);
  for (int i = 0; i < 32 * 32 * 9; ++i) w->add_float_data(((i * 37) % 19 - 9) / 900.f);
  std::string previous = "x";
  for (int l = 0; l < layers; ++l) {
    const std::string out = l + 1 == layers ? "y" : "h" + std::to_string(l);
    onnx::NodeProto* conv = graph->add_node();
    conv->set_op_type("Conv");
    conv->set_name("conv" + std::to_string(l));
    conv->add_input(previous);
    conv->add_input("w");
    conv->add_output(out);
    onnx::AttributeProto* pads = conv->add_attribute();
    pads->set_name("pads");
    pads->set_type(onnx::AttributeProto::INTS);
    for (int k = 0; k < 4; ++k) pads->add_ints(1);
    previous = out;
  }
  return model.SerializeAsString();
}

inline void WriteFile(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace rectifier::testing

#endif  // RECTIFIER_TESTS_REPOSITORY_TEST_MODELS_H_
