// Throwaway certificates for tests, made with the openssl command line: a CA,
// and leaf certificates it signs (server ones with subjectAltNames).
#ifndef RECTIFIER_TESTS_SECURITY_TEST_CERTS_H_
#define RECTIFIER_TESTS_SECURITY_TEST_CERTS_H_

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace rectifier::testing {

// `dir`/<name>.crt and <name>.key; all files of one TestPki live in `dir`.
class TestPki {
 public:
  explicit TestPki(std::string dir) : dir_(std::move(dir)) {
    std::system(("mkdir -p '" + dir_ + "'").c_str());
  }

  // A self-signed CA. Returns false if openssl failed.
  bool MakeCa(const std::string& name) {
    return Run("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=" + name + " -keyout " + name +
               ".key -out " + name + ".crt");
  }

  // A leaf certificate signed by CA `ca`; `san` e.g. "DNS:localhost,IP:127.0.0.1"
  // (empty: none, a client certificate).
  bool MakeLeaf(const std::string& name, const std::string& ca, const std::string& san) {
    std::string ext;
    if (!san.empty()) {
      std::ofstream(Path(name + ".ext")) << "subjectAltName=" << san << "\n";
      ext = " -extfile " + name + ".ext";
    }
    return Run("req -newkey rsa:2048 -nodes -subj /CN=" + name + " -keyout " + name + ".key -out " +
               name + ".csr") &&
           Run("x509 -req -days 2 -in " + name + ".csr -CA " + ca + ".crt -CAkey " + ca +
               ".key -CAcreateserial -out " + name + ".crt" + ext);
  }

  std::string Path(const std::string& file) const { return dir_ + "/" + file; }
  std::string Cert(const std::string& name) const { return Path(name + ".crt"); }
  std::string Key(const std::string& name) const { return Path(name + ".key"); }
  const std::string& dir() const { return dir_; }

 private:
  bool Run(const std::string& args) const {
    const std::string command = "cd '" + dir_ + "' && openssl " + args + " >/dev/null 2>&1";
    return std::system(command.c_str()) == 0;
  }

  std::string dir_;
};

inline std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << file.rdbuf();
  return bytes.str();
}

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Replaces `to` with a copy of `from` in one rename, as a rotation does.
inline void ReplaceFile(const std::string& from, const std::string& to) {
  WriteFile(to + ".new", ReadFile(from));
  std::rename((to + ".new").c_str(), to.c_str());
}

}  // namespace rectifier::testing

#endif  // RECTIFIER_TESTS_SECURITY_TEST_CERTS_H_
