// perf_analyzer's --input-data for rectifier-perf: real input values from a
// JSON file or a directory of raw files, one batch item per entry.
#ifndef RECTIFIER_TOOLS_PERF_INPUT_DATA_H_
#define RECTIFIER_TOOLS_PERF_INPUT_DATA_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rectifier::tools {

// One model input as the data is read for it: its KServe datatype and the
// shape of one batch item (dims without the batch; -1 where the data must
// say, from a JSON entry's "shape").
struct InputDataSpec {
  std::string name;
  std::string datatype;
  std::vector<int64_t> item_shape;
};

// One batch item of one input: its shape and its raw little-endian bytes.
struct ItemData {
  std::vector<int64_t> shape;
  std::string bytes;
};

// One entry per batch item (a request of batch N takes N entries in turn).
using InputDataEntries = std::vector<std::map<std::string, ItemData>>;

// Reads `path`:
//  - a JSON file in perf_analyzer's format: {"data": [ENTRY, ...]}, each
//    ENTRY an object mapping every input name to its values, as a (nested
//    or flat) array of numbers or booleans, {"content": [...], "shape":
//    [...]} or {"b64": "..."} (raw bytes, base64);
//  - a directory holding one raw file per input, named after it, with one
//    batch item's bytes (a single entry).
// INVALID_ARGUMENT names the entry, the input and what is wrong (a missing
// input, a count that does not fit the shape, a value the datatype cannot
// hold, a dynamic dimension the entry does not give).
absl::StatusOr<InputDataEntries> LoadInputData(const std::string& path,
                                               const std::vector<InputDataSpec>& inputs);

// Bytes per element of a KServe datatype; 0 for BYTES and unknown names.
int64_t ElementSize(const std::string& datatype);

}  // namespace rectifier::tools

#endif  // RECTIFIER_TOOLS_PERF_INPUT_DATA_H_
