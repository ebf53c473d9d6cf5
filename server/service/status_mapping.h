// The one place absl::Status becomes grpc::Status.
#ifndef RECTIFIER_SERVER_SERVICE_STATUS_MAPPING_H_
#define RECTIFIER_SERVER_SERVICE_STATUS_MAPPING_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace rectifier::service {

// Maps the canonical code one to one (absl and gRPC share the numbering) and
// keeps the message. An unknown or out-of-range code becomes UNKNOWN.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The inverse, for clients and tests.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_STATUS_MAPPING_H_
