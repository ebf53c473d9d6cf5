// Classification postprocessing: logits -> top-k labelled scores.
#ifndef RECTIFIER_SERVER_IMAGING_CLASSIFICATION_H_
#define RECTIFIER_SERVER_IMAGING_CLASSIFICATION_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace rectifier::imaging {

enum class ScoreActivation {
  kNone,     // Outputs are already probabilities (or raw scores wanted).
  kSoftmax,  // Single-label: scores sum to 1.
  kSigmoid,  // Multi-label findings: each class independently in (0, 1).
};

struct ClassificationOptions {
  ScoreActivation activation = ScoreActivation::kSoftmax;
  int top_k = 5;                    // <= 0 means all classes.
  float threshold = 0.0f;           // Scores below are dropped (after the activation).
  std::vector<std::string> labels;  // Optional; index = class id.
};

struct Classification {
  int class_id = 0;
  float score = 0.0f;
  std::string label;  // Empty when no label is known.
};

absl::Status ValidateClassificationOptions(const ClassificationOptions& options);

// Scores for one batch item (`logits` has one value per class), best first;
// ties keep the lower class id first. INVALID_ARGUMENT for empty input or a
// label list whose size differs from the class count.
absl::StatusOr<std::vector<Classification>> Classify(absl::Span<const float> logits,
                                                     const ClassificationOptions& options);

}  // namespace rectifier::imaging

#endif  // RECTIFIER_SERVER_IMAGING_CLASSIFICATION_H_
