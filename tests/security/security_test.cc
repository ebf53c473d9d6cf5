// Tests for the tokens file and check, and for reading TLS files, with
// certificates made by the openssl command.
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/security/tls_context.h"
#include "server/security/tls_files.h"
#include "server/security/tokens.h"
#include "tests/security/test_certs.h"

namespace rectifier::security {
namespace {

using ::rectifier::testing::ReadFile;
using ::rectifier::testing::ReplaceFile;
using ::rectifier::testing::TestPki;
using ::rectifier::testing::WriteFile;

constexpr char kAdmin[] = "admin-token-0123456789abcdef";
constexpr char kInfer[] = "infer-token-0123456789abcdef";

std::string TempDir() {
  char pattern[] = "/tmp/rectifier-security-XXXXXX";
  return mkdtemp(pattern);
}

TEST(ParseTokensTest, ReadsRolesSkippingCommentsAndBlankLines) {
  auto tokens = ParseTokens(absl::StrCat("# who\n\nadmin ", kAdmin, "\n  infer\t", kInfer, "  \n"));
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->size(), 2u);
  EXPECT_EQ((*tokens)[0].role, Role::kAdmin);
  EXPECT_EQ((*tokens)[1].role, Role::kInfer);
}

TEST(ParseTokensTest, ErrorsNameTheLineAndNeverTheToken) {
  const std::string secret = "s3cret-s3cret-s3cret";
  const struct {
    std::string text;
    std::string expected;
  } cases[] = {
      {"root " + secret, "line 1: the role must be 'infer' or 'admin'"},
      {"# c\nadmin", "line 2: no token after the role"},
      {"admin " + secret + " extra", "line 1: more than two fields"},
      {"infer short", "line 1: the token is shorter than 16 characters"},
      {"infer " + secret + "\nadmin " + secret, "line 2: the token is listed twice"},
      {"# nothing\n\n", "no tokens"},
  };
  for (const auto& c : cases) {
    auto tokens = ParseTokens(c.text);
    ASSERT_FALSE(tokens.ok()) << c.text;
    EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(tokens.status().message(), c.expected))
        << tokens.status().message();
    EXPECT_FALSE(absl::StrContains(tokens.status().message(), secret));
  }
}

TEST(TokenStoreTest, AuthorizesByRole) {
  const std::string dir = TempDir();
  WriteFile(dir + "/tokens", absl::StrCat("admin ", kAdmin, "\ninfer ", kInfer, "\n"));
  auto store = TokenStore::Load(dir + "/tokens");
  ASSERT_TRUE(store.ok()) << store.status();
  const TokenStore& tokens = **store;
  const std::string admin = absl::StrCat("Bearer ", kAdmin);
  const std::string infer = absl::StrCat("bearer  ", kInfer);  // scheme is case-insensitive
  EXPECT_TRUE(tokens.Authorize(admin, Role::kAdmin).ok());
  EXPECT_TRUE(tokens.Authorize(admin, Role::kInfer).ok());
  EXPECT_TRUE(tokens.Authorize(infer, Role::kInfer).ok());
  EXPECT_EQ(tokens.Authorize(infer, Role::kAdmin).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(tokens.Authorize(std::nullopt, Role::kInfer).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(tokens.Authorize(kAdmin, Role::kInfer).code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(tokens.Authorize("Bearer ", Role::kInfer).code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(tokens.Authorize(absl::StrCat("Bearer ", kAdmin, "x"), Role::kInfer).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(tokens.Authorize(absl::StrCat("Basic ", kAdmin), Role::kInfer).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(TokenStoreTest, ReloadReplacesTokensAndKeepsThemOnABadFile) {
  const std::string dir = TempDir();
  const std::string path = dir + "/tokens";
  WriteFile(path, absl::StrCat("admin ", kAdmin, "\n"));
  auto store = TokenStore::Load(path);
  ASSERT_TRUE(store.ok()) << store.status();
  WriteFile(path, absl::StrCat("infer ", kInfer, "\n"));
  ASSERT_TRUE((*store)->Reload().ok());
  EXPECT_EQ((*store)->Authorize(absl::StrCat("Bearer ", kAdmin), Role::kInfer).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE((*store)->Authorize(absl::StrCat("Bearer ", kInfer), Role::kInfer).ok());
  WriteFile(path, "admin too-short\n");
  EXPECT_EQ((*store)->Reload().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*store)->Authorize(absl::StrCat("Bearer ", kInfer), Role::kInfer).ok());
  EXPECT_EQ(TokenStore::Load(dir + "/missing").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

class TlsFilesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new TestPki(TempDir());
    ASSERT_TRUE(pki_->MakeCa("ca"));
    ASSERT_TRUE(pki_->MakeCa("other_ca"));
    ASSERT_TRUE(pki_->MakeLeaf("server", "ca", "DNS:localhost,IP:127.0.0.1"));
    ASSERT_TRUE(pki_->MakeLeaf("server2", "other_ca", "DNS:localhost"));
  }
  static void TearDownTestSuite() {
    std::system(("rm -rf '" + pki_->dir() + "'").c_str());
    delete pki_;
  }
  static TestPki* pki_;
};
TestPki* TlsFilesTest::pki_ = nullptr;

TEST_F(TlsFilesTest, LoadsAMatchingPairAndClientCa) {
  auto identity = TlsIdentity::Load({pki_->Cert("server"), pki_->Key("server"), pki_->Cert("ca")});
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_TRUE(absl::StrContains((*identity)->description(), "CN = server") ||
              absl::StrContains((*identity)->description(), "CN=server"))
      << (*identity)->description();
  EXPECT_NE((*identity)->client_ca_store(), nullptr);
}

TEST_F(TlsFilesTest, ErrorsNameTheFlagAndTheFile) {
  const std::string garbage = pki_->Path("garbage.pem");
  WriteFile(garbage, "not a certificate\n");
  const struct {
    TlsFiles files;
    std::string expected;
  } cases[] = {
      {{pki_->Path("missing.crt"), pki_->Key("server"), ""},
       "--tls-cert '" + pki_->Path("missing.crt") + "': cannot read: No such file"},
      {{garbage, pki_->Key("server"), ""}, "': no PEM certificate in it"},
      {{pki_->Cert("server"), garbage, ""}, "--tls-key '" + garbage + "': no PEM private key"},
      {{pki_->Cert("server"), pki_->Key("server2"), ""}, "does not match the certificate in"},
      {{pki_->Cert("server"), pki_->Key("server"), garbage}, "--tls-client-ca '"},
      {{pki_->Cert("server"), "", ""}, "--tls-cert needs --tls-key"},
      {{"", "", pki_->Cert("ca")}, "--tls-client-ca needs --tls-cert"},
  };
  for (const auto& c : cases) {
    const absl::Status status = ValidateTlsFiles(c.files);
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << c.expected;
    EXPECT_TRUE(absl::StrContains(status.message(), c.expected)) << status.message();
  }
}

TEST_F(TlsFilesTest, ContextReloadsChangedFilesAndKeepsTheOldOnesOnAMismatch) {
  const std::string dir = TempDir();
  const TlsFiles files{dir + "/tls.crt", dir + "/tls.key", ""};
  ReplaceFile(pki_->Cert("server"), files.cert);
  ReplaceFile(pki_->Key("server"), files.key);
  auto context = TlsContext::Create(files);
  ASSERT_TRUE(context.ok()) << context.status();
  const auto first = (*context)->identity();
  auto changed = (*context)->Reload();
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);

  // Half a rotation (new certificate, old key): refused, the old pair stays.
  ReplaceFile(pki_->Cert("server2"), files.cert);
  changed = (*context)->Reload();
  EXPECT_EQ(changed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*context)->identity(), first);

  ReplaceFile(pki_->Key("server2"), files.key);
  changed = (*context)->Reload();
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_EQ((*context)->identity()->cert_pem(), ReadFile(pki_->Cert("server2")));
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace rectifier::security
