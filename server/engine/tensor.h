// Host tensors exchanged with the engine. The type is defined once, in
// server/common/tensor.h, for every layer; the engine names it here.
#ifndef RECTIFIER_SERVER_ENGINE_TENSOR_H_
#define RECTIFIER_SERVER_ENGINE_TENSOR_H_

#include "server/common/tensor.h"

namespace rectifier::engine {

using common::DataType;
using common::DataTypeName;
using common::DataTypeSize;
using common::NumElements;
using common::Tensor;
using common::TensorInfo;
using common::TensorView;

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_TENSOR_H_
