// Test helper: builds small onnx::ModelProto graphs in code and runs them
// through the engine.
#ifndef RECTIFIER_TESTS_ENGINE_MODEL_BUILDER_H_
#define RECTIFIER_TESTS_ENGINE_MODEL_BUILDER_H_

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "onnx/onnx_pb.h"
#include "server/engine/compiled_model.h"
#include "server/engine/execution_context.h"

namespace rectifier::engine::testing {

class ModelBuilder {
 public:
  explicit ModelBuilder(int opset = 13) {
    model_.set_ir_version(7);
    auto* op = model_.add_opset_import();
    op->set_domain("");
    op->set_version(opset);
  }

  // Graph input; -1 dims are dynamic.
  ModelBuilder& Input(const std::string& name, std::vector<int64_t> shape,
                      int type = onnx::TensorProto::FLOAT) {
    AddValueInfo(model_.mutable_graph()->add_input(), name, shape, type);
    return *this;
  }
  ModelBuilder& Output(const std::string& name, int type = onnx::TensorProto::FLOAT) {
    auto* vi = model_.mutable_graph()->add_output();
    vi->set_name(name);
    vi->mutable_type()->mutable_tensor_type()->set_elem_type(type);
    return *this;
  }
  // Float initializer with the given values (raw_data when `raw`).
  ModelBuilder& Init(const std::string& name, std::vector<int64_t> shape, std::vector<float> values,
                     bool raw = true) {
    auto* t = model_.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : shape) t->add_dims(d);
    if (raw) {
      t->set_raw_data(values.data(), values.size() * sizeof(float));
    } else {
      for (float v : values) t->add_float_data(v);
    }
    return *this;
  }
  ModelBuilder& InitInts(const std::string& name, std::vector<int64_t> shape,
                         std::vector<int64_t> values) {
    auto* t = model_.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    for (int64_t d : shape) t->add_dims(d);
    for (int64_t v : values) t->add_int64_data(v);
    return *this;
  }
  // Random float initializer (uniform [lo, hi)).
  ModelBuilder& RandomInit(const std::string& name, std::vector<int64_t> shape, float lo = -1.0f,
                           float hi = 1.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = dist(rng_);
    return Init(name, shape, v);
  }
  onnx::NodeProto& Node(const std::string& op, std::vector<std::string> inputs,
                        std::vector<std::string> outputs, const std::string& name = "") {
    auto* n = model_.mutable_graph()->add_node();
    n->set_op_type(op);
    n->set_name(name.empty() ? outputs[0] + "_node" : name);
    for (auto& i : inputs) n->add_input(i);
    for (auto& o : outputs) n->add_output(o);
    return *n;
  }
  static void IntAttr(onnx::NodeProto& n, const std::string& key, int64_t v) {
    auto* a = n.add_attribute();
    a->set_name(key);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void FloatAttr(onnx::NodeProto& n, const std::string& key, float v) {
    auto* a = n.add_attribute();
    a->set_name(key);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }
  static void IntsAttr(onnx::NodeProto& n, const std::string& key, std::vector<int64_t> v) {
    auto* a = n.add_attribute();
    a->set_name(key);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void StringAttr(onnx::NodeProto& n, const std::string& key, const std::string& v) {
    auto* a = n.add_attribute();
    a->set_name(key);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v);
  }
  std::string Bytes() const { return model_.SerializeAsString(); }
  onnx::ModelProto& model() { return model_; }

 private:
  static void AddValueInfo(onnx::ValueInfoProto* vi, const std::string& name,
                           const std::vector<int64_t>& shape, int type) {
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(type);
    auto* s = tt->mutable_shape();
    for (int64_t d : shape) {
      auto* dim = s->add_dim();
      if (d < 0) {
        dim->set_dim_param("N");
      } else {
        dim->set_dim_value(d);
      }
    }
  }

  onnx::ModelProto model_;
  std::mt19937 rng_{1234};
};

inline Tensor RandomTensor(std::vector<int64_t> shape, uint32_t seed = 7) {
  Tensor t = Tensor::Zeros(DataType::kFloat32, std::move(shape));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

// Compiles `bytes` and runs it once on `inputs`.
inline absl::StatusOr<std::vector<Tensor>> CompileAndRun(const std::string& bytes,
                                                         const std::vector<Tensor>& inputs,
                                                         bool fuse = true) {
  CompileOptions options;
  options.fuse = fuse;
  auto model = CompiledModel::FromBytes(bytes, options);
  if (!model.ok()) return model.status();
  auto ctx = ExecutionContext::Create(*model, {1});
  if (!ctx.ok()) return ctx.status();
  return (*ctx)->Run(inputs);
}

// A compiled plan's description and the outputs of running it.
struct PlanRun {
  std::string plan;
  std::vector<Tensor> outputs;
};

// Compiles `bytes` with `options`, describes the plan for x's batch and
// runs it `runs` times on 2 threads (the later runs reuse the memory the
// first bound); the outputs are the last run's. Failures are test failures.
inline PlanRun CompileDescribeRun(const std::string& bytes, const Tensor& x,
                                  const CompileOptions& options, int runs = 1) {
  auto model = CompiledModel::FromBytes(bytes, options);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {};
  PlanRun run;
  auto plan = (*model)->DescribePlan(static_cast<int>(x.shape[0]));
  EXPECT_TRUE(plan.ok()) << plan.status();
  if (plan.ok()) run.plan = *plan;
  auto ctx = ExecutionContext::Create(*model, {2});
  EXPECT_TRUE(ctx.ok());
  if (!ctx.ok()) return run;
  for (int i = 0; i < runs; ++i) {
    auto out = (*ctx)->Run({x});
    EXPECT_TRUE(out.ok()) << out.status();
    if (out.ok()) run.outputs = *std::move(out);
  }
  return run;
}

inline void ExpectNear(const Tensor& got, const Tensor& want, float tol = 1e-4f) {
  ASSERT_EQ(got.shape, want.shape);
  ASSERT_EQ(got.type, want.type);
  for (int64_t i = 0; i < got.num_elements(); ++i) {
    const float g = got.data<float>()[i], w = want.data<float>()[i];
    ASSERT_NEAR(g, w, tol * (1.0f + std::fabs(w))) << "at element " << i;
  }
}

}  // namespace rectifier::engine::testing

#endif  // RECTIFIER_TESTS_ENGINE_MODEL_BUILDER_H_
