#include "server/imaging/classification.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"

namespace rectifier::imaging {

absl::Status ValidateClassificationOptions(const ClassificationOptions& options) {
  if (!std::isfinite(options.threshold)) {
    return absl::InvalidArgumentError("postprocessing: threshold must be finite");
  }
  // After softmax or sigmoid the scores are probabilities: a threshold
  // outside [0, 1] would keep every class or none.
  if (options.activation != ScoreActivation::kNone &&
      (options.threshold < 0.0f || options.threshold > 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("threshold ", options.threshold,
                     " is outside [0, 1] (the model's scores are probabilities after its ",
                     options.activation == ScoreActivation::kSoftmax ? "softmax" : "sigmoid", ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Classification>> Classify(absl::Span<const float> logits,
                                                     const ClassificationOptions& options) {
  RETURN_IF_ERROR(ValidateClassificationOptions(options));
  if (logits.empty()) return absl::InvalidArgumentError("classification: no scores");
  if (!options.labels.empty() && options.labels.size() != logits.size()) {
    return absl::InvalidArgumentError(absl::StrCat("classification: ", options.labels.size(),
                                                   " labels for ", logits.size(), " classes"));
  }
  const int n = static_cast<int>(logits.size());
  std::vector<float> scores(logits.begin(), logits.end());
  if (options.activation == ScoreActivation::kSoftmax) {
    // Subtract the max so exp() cannot overflow.
    const float max = *std::max_element(scores.begin(), scores.end());
    double sum = 0.0;
    for (float& s : scores) {
      s = std::exp(s - max);
      sum += s;
    }
    for (float& s : scores) s = static_cast<float>(s / sum);
  } else if (options.activation == ScoreActivation::kSigmoid) {
    for (float& s : scores) s = 1.0f / (1.0f + std::exp(-s));
  }
  // NaN (a broken model) would break the sort's ordering: rank it lowest.
  for (float& s : scores) {
    if (std::isnan(s)) s = -std::numeric_limits<float>::infinity();
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  const int k = options.top_k > 0 ? std::min(options.top_k, n) : n;
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  });
  std::vector<Classification> result;
  result.reserve(k);
  for (int i = 0; i < k; ++i) {
    const int id = order[i];
    if (!(scores[id] >= options.threshold)) break;  // Sorted: the rest are lower.
    result.push_back({id, scores[id], options.labels.empty() ? std::string() : options.labels[id]});
  }
  return result;
}

}  // namespace rectifier::imaging
