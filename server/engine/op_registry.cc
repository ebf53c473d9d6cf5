// The explicit op table.
#include "server/engine/op_registry.h"

namespace rectifier::engine {

const OpDef* FindOp(const std::string& op_type) {
  static const OpTable* table = [] {
    auto* t = new OpTable();
    RegisterElementwiseOps(*t);
    RegisterTensorOps(*t);
    RegisterNnOps(*t);
    RegisterConvPoolOps(*t);
    return t;
  }();
  auto it = table->find(op_type);
  return it == table->end() ? nullptr : &it->second;
}

}  // namespace rectifier::engine
