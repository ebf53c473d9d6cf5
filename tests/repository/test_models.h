// Tiny ONNX models written from code for repository and service tests.
#ifndef RECTIFIER_TESTS_REPOSITORY_TEST_MODELS_H_
#define RECTIFIER_TESTS_REPOSITORY_TEST_MODELS_H_

#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace rectifier::testing {

// y = x * factor, x and y FP32 [batch, channels, 2, 2] with a dynamic batch
// dimension (or fixed at 1 when !dynamic_batch).
inline std::string ScaleModelBytes(float factor, int channels = 3, bool dynamic_batch = true) {
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
    shape->add_dim()->set_dim_value(2);
    shape->add_dim()->set_dim_value(2);
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

inline void WriteFile(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace rectifier::testing

#endif  // RECTIFIER_TESTS_REPOSITORY_TEST_MODELS_H_
