// ONNX import and load-time errors: initializer encodings, Constant nodes,
// corrupt bytes, unsupported ops/attributes, cycles, size limits, declared
// sizes that the file does not back.
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/engine/ir/onnx_import.h"
#include "server/engine/ir/onnx_tensor.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::CompileAndRun;
using testing::ModelBuilder;

ModelBuilder AddModel(bool raw) {
  ModelBuilder b;
  b.Input("x", {2, 2});
  b.Init("c", {2, 2}, {1, 2, 3, 4}, raw);
  b.Node("Add", {"x", "c"}, {"y"});
  b.Output("y");
  return b;
}

TEST(ImportTest, RawAndTypedInitializersAgree) {
  Tensor x = Tensor::Zeros(DataType::kFloat32, {2, 2});
  for (bool raw : {true, false}) {
    auto out = CompileAndRun(AddModel(raw).Bytes(), {x});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_FLOAT_EQ((*out)[0].data<float>()[3], 4.0f) << "raw=" << raw;
  }
}

TEST(ImportTest, ConstantNodesBecomeConstants) {
  ModelBuilder b;
  b.Input("x", {3});
  auto& c = b.Node("Constant", {}, {"k"});
  auto* a = c.add_attribute();
  a->set_name("value_floats");
  a->set_type(onnx::AttributeProto::FLOATS);
  for (float v : {0.5f, 1.5f, 2.5f}) a->add_floats(v);
  b.Node("Mul", {"x", "k"}, {"y"});
  b.Output("y");
  auto g = ImportOnnx(b.Bytes(), {}, 1 << 20);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(g->IsConstant("k"));
  EXPECT_EQ(g->nodes.size(), 1u);
  Tensor x = Tensor::Zeros(DataType::kFloat32, {3});
  for (int i = 0; i < 3; ++i) x.data<float>()[i] = 2.0f;
  auto out = CompileAndRun(b.Bytes(), {x});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_FLOAT_EQ((*out)[0].data<float>()[2], 5.0f);
}

TEST(ImportTest, ConstantInputsBindGraphInputs) {
  ModelBuilder b;
  b.Input("x", {2});
  b.Input("k", {2});
  b.Node("Sub", {"x", "k"}, {"y"});
  b.Output("y");
  CompileOptions options;
  Tensor k = Tensor::Zeros(DataType::kFloat32, {2});
  k.data<float>()[0] = 1;
  k.data<float>()[1] = -1;
  options.constant_inputs["k"] = k;
  auto model = CompiledModel::FromBytes(b.Bytes(), options);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ((*model)->inputs().size(), 1u);
  EXPECT_EQ((*model)->inputs()[0].name, "x");
  auto ctx = ExecutionContext::Create(*model);
  ASSERT_TRUE(ctx.ok());
  auto out = (*ctx)->Run({Tensor::Zeros(DataType::kFloat32, {2})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_FLOAT_EQ((*out)[0].data<float>()[0], -1.0f);
  EXPECT_FLOAT_EQ((*out)[0].data<float>()[1], 1.0f);
}

TEST(ImportTest, TruncatedAndRandomBytesAreInvalidArgument) {
  const std::string good = AddModel(true).Bytes();
  for (size_t cut : {size_t{0}, size_t{1}, good.size() / 2, good.size() - 3}) {
    auto m = CompiledModel::FromBytes(std::string_view(good.data(), cut));
    ASSERT_FALSE(m.ok()) << "cut " << cut;
    EXPECT_TRUE(absl::IsInvalidArgument(m.status()) || absl::IsUnimplemented(m.status()))
        << m.status();
  }
  std::string noise(512, '\0');
  uint32_t s = 99;
  for (auto& ch : noise) ch = static_cast<char>((s = s * 1103515245u + 12345u) >> 24);
  auto m = CompiledModel::FromBytes(noise);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(m.status())) << m.status();
}

TEST(ImportTest, MissingFileIsNotFound) {
  auto m = CompiledModel::FromFile("/nonexistent/model.onnx");
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsNotFound(m.status()));
}

TEST(ImportTest, UnsupportedOpNamesOpNodeAndOpset) {
  ModelBuilder b;
  b.Input("x", {1});
  b.Node("Foo", {"x"}, {"y"}, "n3");
  b.Output("y");
  auto m = CompiledModel::FromBytes(b.Bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsUnimplemented(m.status()));
  EXPECT_EQ(m.status().message(), "unsupported op 'Foo' (node 'n3', opset 13)");
}

TEST(ImportTest, UnsupportedAttributeValueNamesAttribute) {
  ModelBuilder b;
  b.Input("x", {1, 1, 2, 2});
  b.Init("scales", {4}, {1, 1, 2, 2});
  b.Init("roi", {0}, {});
  auto& r = b.Node("Resize", {"x", "roi", "scales"}, {"y"}, "r1");
  ModelBuilder::StringAttr(r, "mode", "cubic");
  b.Output("y");
  auto m = CompiledModel::FromBytes(b.Bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsUnimplemented(m.status()));
  EXPECT_TRUE(
      absl::StrContains(m.status().message(), "Resize mode 'cubic' is not supported (node 'r1')"))
      << m.status();
}

TEST(ImportTest, CycleIsInvalidArgument) {
  ModelBuilder b;
  b.Input("x", {1});
  b.Node("Add", {"x", "b"}, {"a"}, "n1");
  b.Node("Relu", {"a"}, {"b"}, "n2");
  b.Output("b");
  auto m = CompiledModel::FromBytes(b.Bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(m.status()));
  EXPECT_TRUE(absl::StrContains(m.status().message(), "cycle")) << m.status();
}

TEST(ImportTest, DanglingInputIsInvalidArgument) {
  ModelBuilder b;
  b.Input("x", {1});
  b.Node("Add", {"x", "ghost"}, {"y"}, "n1");
  b.Output("y");
  auto m = CompiledModel::FromBytes(b.Bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(m.status()));
  EXPECT_TRUE(absl::StrContains(m.status().message(), "'ghost'")) << m.status();
}

TEST(ImportTest, InconsistentShapesAreInvalidArgument) {
  ModelBuilder b;
  b.Input("x", {2, 3});
  b.Init("c", {4}, {1, 2, 3, 4});
  b.Node("Add", {"x", "c"}, {"y"}, "bad_add");
  b.Output("y");
  auto m = CompiledModel::FromBytes(b.Bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(m.status()));
  EXPECT_TRUE(absl::StrContains(m.status().message(), "bad_add")) << m.status();
}

TEST(ImportTest, TensorOverLimitIsResourceExhausted) {
  CompileOptions options;
  options.max_tensor_bytes = 8;
  auto m = CompiledModel::FromBytes(AddModel(true).Bytes(), options);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(m.status())) << m.status();
  // An activation over the limit fails the same way.
  ModelBuilder b;
  b.Input("x", {1, 4});
  b.InitInts("reps", {2}, {1000, 1000});
  b.Node("Tile", {"x", "reps"}, {"y"});
  b.Output("y");
  options.max_tensor_bytes = 1 << 20;
  m = CompiledModel::FromBytes(b.Bytes(), options);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(m.status())) << m.status();
}

// ---- Declared sizes vs the bytes present ---------------------------------------------------

// A float tensor `name` declaring `dims` whose payload is `values` floats in
// raw_data (or in float_data when `raw` is false).
onnx::TensorProto DeclaredTensor(const std::string& name, const std::vector<int64_t>& dims,
                                 int values, bool raw) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t.add_dims(d);
  if (raw) {
    t.set_raw_data(std::string(static_cast<size_t>(values) * sizeof(float), '\0'));
  } else {
    for (int i = 0; i < values; ++i) t.add_float_data(1.0f);
  }
  return t;
}

// x + W with initializer W as given.
std::string AddInitializerModel(const onnx::TensorProto& w) {
  ModelBuilder b;
  b.Input("x", {1});
  *b.model().mutable_graph()->add_initializer() = w;
  b.Node("Add", {"x", w.name()}, {"y"});
  b.Output("y");
  return b.Bytes();
}

// x + c with c from a Constant node whose `value` is `value`.
std::string AddConstantNodeModel(const onnx::TensorProto& value) {
  ModelBuilder b;
  b.Input("x", {1});
  auto& c = b.Node("Constant", {}, {value.name()}, "big_constant");
  auto* a = c.add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  *a->mutable_t() = value;
  b.Node("Add", {"x", value.name()}, {"y"});
  b.Output("y");
  return b.Bytes();
}

TEST(ImportTest, DeclaredShapeBeyondDataNamesTensorShapeAndBytes) {
  // 16 MiB declared, 12 bytes present (raw_data) / 3 values (float_data).
  for (bool raw : {true, false}) {
    auto t = TensorFromProto(DeclaredTensor("w_short", {1 << 20, 4}, 3, raw));
    ASSERT_FALSE(t.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(t.status())) << t.status();
    const std::string msg(t.status().message());
    EXPECT_TRUE(absl::StrContains(msg, "'w_short'")) << msg;
    EXPECT_TRUE(absl::StrContains(msg, "[1048576,4]")) << msg;
    EXPECT_TRUE(absl::StrContains(msg, "16777216 bytes")) << msg;
    EXPECT_TRUE(absl::StrContains(
        msg, raw ? "raw_data holds 12 bytes" : "float_data (3 values) holds 12 bytes"))
        << msg;
  }
  // The same through a whole model, for an initializer and a Constant node.
  auto m = CompiledModel::FromBytes(
      AddInitializerModel(DeclaredTensor("w_short", {1 << 20, 4}, 0, true)));
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(m.status())) << m.status();
  EXPECT_TRUE(absl::StrContains(m.status().message(), "'w_short' declares shape [1048576,4]"))
      << m.status();
  m = CompiledModel::FromBytes(
      AddConstantNodeModel(DeclaredTensor("c_short", {1 << 20, 4}, 1, false)));
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(m.status())) << m.status();
  EXPECT_TRUE(absl::StrContains(m.status().message(), "big_constant")) << m.status();
  EXPECT_TRUE(absl::StrContains(m.status().message(), "'c_short' declares shape [1048576,4]"))
      << m.status();
}

TEST(ImportTest, DimProductsThatOverflowOrAreNegativeAreInvalidArgument) {
  const std::vector<std::vector<int64_t>> bad = {
      {int64_t{1} << 40, int64_t{1} << 40, int64_t{1} << 40},  // product beyond int64
      {int64_t{1} << 62, 2},                                   // 2^63 elements
      {int64_t{1} << 61},                                      // 2^63 bytes
      {4, -1},
      {-2, -2}};  // a positive product of negative dims
  for (const auto& dims : bad) {
    auto t = TensorFromProto(DeclaredTensor("w_bad", dims, 0, true));
    ASSERT_FALSE(t.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(t.status())) << t.status();
    EXPECT_TRUE(absl::StrContains(t.status().message(), "'w_bad' declares shape")) << t.status();
  }
  // A zero dimension makes the tensor empty; the others must still be
  // sizes a layout can stride over (2^62 x 8 x 4 bytes is not).
  auto empty = TensorFromProto(DeclaredTensor("w_empty", {0, 1000, 8}, 0, true));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->bytes.empty());
  auto huge_empty = TensorFromProto(DeclaredTensor("w_bad", {0, int64_t{1} << 62, 8}, 0, true));
  ASSERT_FALSE(huge_empty.ok());
  EXPECT_TRUE(absl::StrContains(huge_empty.status().message(), "'w_bad' declares shape"))
      << huge_empty.status();
}

TEST(ImportTest, ExternalDataIsRefusedBeforeReadingAnything) {
  onnx::TensorProto w = DeclaredTensor("w_ext", {int64_t{1} << 30}, 0, true);
  w.clear_raw_data();
  w.set_data_location(onnx::TensorProto::EXTERNAL);
  auto* location = w.add_external_data();
  location->set_key("location");
  location->set_value("../../../../etc/passwd");
  auto m = CompiledModel::FromBytes(AddInitializerModel(w));
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsUnimplemented(m.status())) << m.status();
  EXPECT_TRUE(absl::StrContains(m.status().message(), "'w_ext' uses external data")) << m.status();
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RECTIFIER_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define RECTIFIER_SANITIZED 1
#endif
#endif

// Compiles `bytes` with the address space capped at 1 GiB above the current
// size, prints the status and exits 0 for INVALID_ARGUMENT. Run in a death
// test's child: the limit must not outlive it.
[[noreturn]] void CompileWithOneGibHeadroom(const std::string& bytes) {
  long pages = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld", &pages) != 1) pages = 0;
    std::fclose(f);
  }
  const rlim_t limit =
      static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) + (rlim_t{1} << 30);
  rlimit rl{};
  getrlimit(RLIMIT_AS, &rl);
  rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? limit : std::min(limit, rl.rlim_max);
  if (pages == 0 || setrlimit(RLIMIT_AS, &rl) != 0) {
    std::cerr << "cannot cap the address space" << std::endl;
    _exit(2);
  }
  const absl::Status status = CompiledModel::FromBytes(bytes).status();
  std::cerr << status << std::endl;
  _exit(absl::IsInvalidArgument(status) ? 0 : 1);
}

// The 4 GiB-declaring models must be refused without allocating their
// declared size: with only 1 GiB of address space to spare, the old import
// (which zero-filled the declared size first) ran out of memory.
TEST(ImportDeathTest, FourGibDeclaredWithoutDataIsRefusedWithinOneGib) {
#ifdef RECTIFIER_SANITIZED
  GTEST_SKIP() << "sanitizers reserve shadow memory: no address-space cap possible";
#else
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const int64_t kFourGibOfFloats = int64_t{1} << 30;
  // The model: dims [1073741824] FLOAT, no data at all.
  EXPECT_EXIT(CompileWithOneGibHeadroom(
                  AddInitializerModel(DeclaredTensor("W", {kFourGibOfFloats}, 0, false))),
              ::testing::ExitedWithCode(0),
              "'W' declares shape \\[1073741824\\] of FLOAT \\(4294967296 bytes\\) but "
              "float_data \\(0 values\\) holds 0 bytes");
  EXPECT_EXIT(CompileWithOneGibHeadroom(
                  AddInitializerModel(DeclaredTensor("W", {kFourGibOfFloats}, 16, true))),
              ::testing::ExitedWithCode(0), "'W' .*raw_data holds 64 bytes");
  EXPECT_EXIT(CompileWithOneGibHeadroom(
                  AddConstantNodeModel(DeclaredTensor("c", {kFourGibOfFloats}, 1, true))),
              ::testing::ExitedWithCode(0), "big_constant.*'c' declares shape \\[1073741824\\]");
#endif
}

// Models the fuzzer built (kept in fuzz/corpus/onnx/): each is refused with a
// clear error, and none overflows on the way (found under UBSan).
TEST(ImportTest, FuzzFoundModelsAreRefusedCleanly) {
  const struct {
    const char* file;
    const char* expected;
  } cases[] = {
      // These three share an empty initializer 's' whose other dimensions
      // have no representable strides; it is refused on import, before the
      // pooling-window and Flatten overflow checks they first hit (both
      // still in place).
      {"fuzz/corpus/onnx/found_pool_window_overflow.onnx",
       "tensor 's' declares shape [4,0,11821949021847551,1033804,132533402]"},
      {"fuzz/corpus/onnx/found_flatten_dims_overflow.onnx",
       "tensor 's' declares shape [0,344063,35521269323530239,132533402]"},
      // The same initializer as a graph output: its plain layout's strides
      // overflowed (UBSan) when the plan bound it.
      {"fuzz/corpus/onnx/found_empty_initializer_strides_overflow.onnx",
       "tensor 's' declares shape [4,0,11821949021847551,1033804,132533402]"},
  };
  for (const auto& c : cases) {
    std::ifstream file(c.file, std::ios::binary);
    ASSERT_TRUE(file.good()) << c.file;
    const std::string bytes((std::istreambuf_iterator<char>(file)),
                            std::istreambuf_iterator<char>());
    auto m = CompiledModel::FromBytes(bytes);
    ASSERT_FALSE(m.ok()) << c.file;
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << m.status();
    EXPECT_TRUE(absl::StrContains(m.status().message(), c.expected)) << m.status();
  }
}

}  // namespace
}  // namespace rectifier::engine
