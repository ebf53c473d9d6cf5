// The token check of a gRPC call (--auth-tokens), and the reactor that
// refuses a stream before it starts.
#ifndef RECTIFIER_SERVER_SERVICE_CALL_AUTH_H_
#define RECTIFIER_SERVER_SERVICE_CALL_AUTH_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "server/security/tokens.h"

namespace rectifier::service {

// OK when `tokens` is null (the server runs without --auth-tokens);
// otherwise the call's `authorization` metadata must carry a token with
// `needed` (TokenStore::Authorize). Refusals are logged at debug level with
// the peer, never with the token.
absl::Status AuthorizeCall(const security::TokenStore* tokens,
                           const grpc::CallbackServerContext& context, security::Role needed);

// A bidi stream answered with `status` at once, reading nothing.
template <typename Request, typename Response>
class RefusedStream final : public grpc::ServerBidiReactor<Request, Response> {
 public:
  explicit RefusedStream(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_CALL_AUTH_H_
