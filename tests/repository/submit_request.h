// Submitting a ready-made request to a repository, for the repository tests.
#ifndef RECTIFIER_TESTS_REPOSITORY_SUBMIT_REQUEST_H_
#define RECTIFIER_TESTS_REPOSITORY_SUBMIT_REQUEST_H_

#include <memory>
#include <string>

#include "server/repository/model_repository.h"

namespace rectifier::testing {

// Hands `request` to the model's scheduler through Submit, as the front ends
// do; when Submit refuses it, request->done gets the error.
inline void SubmitRequest(repository::ModelRepository& repo, const std::string& name,
                          const std::string& version,
                          std::unique_ptr<scheduling::InferenceRequest> request) {
  auto done = request->done;
  const absl::Status status =
      repo.Submit(name, version, [&request](const std::shared_ptr<const repository::ServedModel>&) {
        return absl::StatusOr<std::unique_ptr<scheduling::InferenceRequest>>(std::move(request));
      });
  if (!status.ok()) done(status, scheduling::RequestTimes{});
}

}  // namespace rectifier::testing

#endif  // RECTIFIER_TESTS_REPOSITORY_SUBMIT_REQUEST_H_
