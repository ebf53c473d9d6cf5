// libFuzzer target: untrusted model.onnx bytes through CompiledModel::FromBytes,
// the entry point of the repository's loader and rectifier-engine: ImportOnnx,
// shape inference, passes and the eager batch-1 oneDNN plan.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fuzz/fuzz_models.h"
#include "server/engine/compiled_model.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // One OpenMP thread: the fuzzer measures the code, not a thread team, and
  // a team per process would multiply memory under ASan.
  setenv("OMP_NUM_THREADS", "1", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  rectifier::engine::CompileOptions options;
  options.max_batch_size = 2;
  // Small enough that compiling stays cheap; any allocation the fuzzer sees
  // above this (-malloc_limit_mb) means a size check was skipped.
  options.max_tensor_bytes = int64_t{16} << 20;
  // The conv layout from the input's size (0: oneDNN's choice, 1: nChw8c,
  // 2: nChw16c), so that the lowerings only blocked layouts take (depthwise
  // fusion, blocked concat and slice copies) are reached too.
  constexpr rectifier::engine::ConvLayout kLayouts[] = {rectifier::engine::ConvLayout::kAny,
                                                        rectifier::engine::ConvLayout::kBlocked8,
                                                        rectifier::engine::ConvLayout::kBlocked16};
  options.conv_layout = kLayouts[size % 3];
  // Every supported depthwise (3x3) convolution on Rectifier's depthwise
  // (Winograd) kernel on every other size, so that its lowering is reached
  // whatever the shapes; the Winograd kernel's F(2x2, 3x3) and F(4x4, 3x3)
  // in turn.
  const bool rectifier_kernels = (size / 3) % 2 != 0;
  options.depthwise_kernel = rectifier_kernels ? rectifier::engine::DepthwiseKernel::kRectifier
                                               : rectifier::engine::DepthwiseKernel::kAuto;
  options.conv3x3_kernel = !rectifier_kernels    ? rectifier::engine::Conv3x3Kernel::kAuto
                           : (size / 6) % 2 != 0 ? rectifier::engine::Conv3x3Kernel::kWinogradF4x4
                                                 : rectifier::engine::Conv3x3Kernel::kWinograd;
  auto model = rectifier::engine::CompiledModel::FromBytes(bytes, options);
  rectifier::fuzz::Report("CompiledModel::FromBytes", model.status());
  if (!model.ok()) return 0;
  // A dimension past the batch is known (>= 0) or dynamic (-1, and the
  // model says it has dynamic dimensions).
  for (const auto& in : (*model)->inputs()) {
    for (size_t d = 1; d < in.shape.size(); ++d) {
      RECTIFIER_FUZZ_CHECK(in.shape[d] >= 0 || (in.shape[d] == -1 && (*model)->has_dynamic_dims()));
    }
  }
  RECTIFIER_FUZZ_CHECK((*model)->max_batch_size() >= 1);
  return 0;
}
