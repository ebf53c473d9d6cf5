// Submitting a ready-made request to a repository, for the repository tests.
#ifndef RECTIFIER_TESTS_REPOSITORY_SUBMIT_REQUEST_H_
#define RECTIFIER_TESTS_REPOSITORY_SUBMIT_REQUEST_H_

#include <memory>
#include <string>

#include "server/repository/model_repository.h"

namespace rectifier::testing {

// Resolves the version and hands `request` to its scheduler, as the front
// ends do (Get, then Submit); when either refuses it, request->done gets the
// error.
inline void SubmitRequest(repository::ModelRepository& repo, const std::string& name,
                          const std::string& version,
                          std::unique_ptr<scheduling::InferenceRequest> request) {
  auto done = request->done;
  auto served = repo.Get(name, version);
  const absl::Status status =
      served.ok() ? repo.Submit(*served, version, std::move(request)) : served.status();
  if (!status.ok()) done(status, scheduling::RequestTimes{});
}

}  // namespace rectifier::testing

#endif  // RECTIFIER_TESTS_REPOSITORY_SUBMIT_REQUEST_H_
