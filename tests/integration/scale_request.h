// A ModelInferRequest for the "scale" test model (ScaleModelBytes): input
// "x" FP32 [batch, 3, 2, 2] holding base, base + 1, ...
#ifndef RECTIFIER_TESTS_INTEGRATION_SCALE_REQUEST_H_
#define RECTIFIER_TESTS_INTEGRATION_SCALE_REQUEST_H_

#include <cstdint>
#include <vector>

#include "grpc_service.pb.h"

namespace rectifier::testing {

inline inference::ModelInferRequest ScaleRequest(int batch, float base) {
  inference::ModelInferRequest request;
  request.set_model_name("scale");
  request.set_id("r-42");
  auto* input = request.add_inputs();
  input->set_name("x");
  input->set_datatype("FP32");
  for (int64_t d : {static_cast<int64_t>(batch), int64_t{3}, int64_t{2}, int64_t{2}}) {
    input->add_shape(d);
  }
  std::vector<float> values(static_cast<size_t>(batch) * 12);
  for (size_t i = 0; i < values.size(); ++i) values[i] = base + static_cast<float>(i);
  request.add_raw_input_contents(reinterpret_cast<const char*>(values.data()),
                                 values.size() * sizeof(float));
  return request;
}

}  // namespace rectifier::testing

#endif  // RECTIFIER_TESTS_INTEGRATION_SCALE_REQUEST_H_
