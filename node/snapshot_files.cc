#include "node/snapshot_files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "openssl/evp.h"

namespace passerelle::node {
namespace {

constexpr char kSealHeader[] = "passerelle snapshot seal 1";

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(
      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

std::string Hex(const unsigned char* data, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 15]);
  }
  return out;
}

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    ok_ = ctx_ != nullptr && EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
  }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  void Update(const void* data, size_t n) {
    ok_ = ok_ && EVP_DigestUpdate(ctx_, data, n);
  }
  absl::StatusOr<std::string> Hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!ok_ || !EVP_DigestFinal_ex(ctx_, md, &n)) {
      return absl::InternalError("SHA-256 failed (OpenSSL)");
    }
    return node::Hex(md, n);
  }

 private:
  EVP_MD_CTX* ctx_;
  bool ok_;
};

// SHA-256 and size of a file; with `sync`, fsyncs it too.
absl::Status HashFile(const std::string& path, bool sync, uint64_t* size,
                      std::string* hex) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open", path);
  Sha256 sha;
  std::string buf(1 << 20, '\0');
  uint64_t total = 0;
  absl::Status st;
  for (;;) {
    const ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      st = Errno("cannot read", path);
      break;
    }
    if (n == 0) break;
    sha.Update(buf.data(), static_cast<size_t>(n));
    total += static_cast<uint64_t>(n);
  }
  if (st.ok() && sync && fsync(fd) != 0) st = Errno("cannot fsync", path);
  close(fd);
  PASSERELLE_RETURN_IF_ERROR(st);
  *size = total;
  PASSERELLE_ASSIGN_OR_RETURN(*hex, sha.Hex());
  return absl::OkStatus();
}

std::string SealBody(const Seal& seal) {
  std::string body = absl::StrCat(kSealHeader, "\nsite ", seal.site,
                                  "\nversion ", seal.version, "\n");
  for (const SealedFile& f : seal.files) {
    absl::StrAppend(&body, "file ", f.path, " ", f.size, " ", f.sha256_hex,
                    "\n");
  }
  return body;
}

absl::StatusOr<std::string> HashText(absl::string_view text) {
  Sha256 sha;
  sha.Update(text.data(), text.size());
  return sha.Hex();
}

}  // namespace

absl::Status SyncDirectory(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open directory", dir);
  const int rc = fsync(fd);
  close(fd);
  if (rc != 0) return Errno("cannot fsync directory", dir);
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view content) {
  const std::string tmp = absl::StrCat(path, ".tmp");
  const int fd =
      open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot create", tmp);
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status st = Errno("cannot write", tmp);
      close(fd);
      return st;
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) {
    absl::Status st = Errno("cannot fsync", tmp);
    close(fd);
    return st;
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return Errno("cannot rename into place", path);
  }
  return SyncDirectory(std::filesystem::path(path).parent_path().string());
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                          size_t max_bytes) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    }
    return Errno("cannot open", path);
  }
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status st = Errno("cannot read", path);
      close(fd);
      return st;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      close(fd);
      return absl::DataLossError(
          absl::StrCat(path, " is over ", max_bytes, " bytes"));
    }
  }
  close(fd);
  return out;
}

absl::StatusOr<FileLock> FileLock::Acquire(const std::string& path, Mode mode,
                                           bool wait, bool create) {
  const int fd = create ? open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)
                        : open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    }
    return Errno("cannot open", path);
  }
  const int op =
      (mode == Mode::kShared ? LOCK_SH : LOCK_EX) | (wait ? 0 : LOCK_NB);
  while (flock(fd, op) != 0) {
    if (errno == EINTR) continue;
    const bool busy = errno == EWOULDBLOCK;
    absl::Status st =
        busy ? absl::ResourceExhaustedError(absl::StrCat(path, " is locked"))
             : Errno("cannot lock", path);
    close(fd);
    return st;
  }
  return FileLock(fd);
}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

FileLock::~FileLock() {
  if (fd_ >= 0) close(fd_);  // Releases the lock.
}

bool FileLock::StillAt(const std::string& path) const {
  struct stat held, now;
  if (fd_ < 0 || fstat(fd_, &held) != 0 || stat(path.c_str(), &now) != 0) {
    return false;
  }
  return held.st_dev == now.st_dev && held.st_ino == now.st_ino;
}

absl::Status WriteSeal(const std::string& dir, const std::string& site,
                       const std::string& version,
                       const std::vector<std::string>& skip) {
  namespace fs = std::filesystem;
  Seal seal;
  seal.site = site;
  seal.version = version;
  std::vector<std::string> dirs = {dir};
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string rel = fs::relative(it->path(), dir).string();
    if (it->is_directory()) {
      dirs.push_back(it->path().string());
      continue;
    }
    if (!it->is_regular_file() || rel == kSealFile ||
        rel == std::string(kSealFile) + ".tmp" ||
        std::find(skip.begin(), skip.end(), rel) != skip.end()) {
      continue;
    }
    SealedFile f;
    f.path = rel;
    PASSERELLE_RETURN_IF_ERROR(
        HashFile(it->path().string(), /*sync=*/true, &f.size, &f.sha256_hex));
    seal.files.push_back(std::move(f));
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot list ", dir, ": ", ec.message()));
  }
  for (const SealedFile& f : seal.files) {
    if (f.path.find_first_of(" \n") != std::string::npos) {
      return absl::InternalError(
          absl::StrCat("cannot seal ", dir, ": file name \"", f.path,
                       "\" has a space or a line break"));
    }
  }
  std::sort(
      seal.files.begin(), seal.files.end(),
      [](const SealedFile& a, const SealedFile& b) { return a.path < b.path; });
  for (const std::string& d : dirs) {
    PASSERELLE_RETURN_IF_ERROR(SyncDirectory(d));
  }
  const std::string body = SealBody(seal);
  PASSERELLE_ASSIGN_OR_RETURN(std::string digest, HashText(body));
  return WriteFileAtomically((fs::path(dir) / kSealFile).string(),
                             absl::StrCat(body, "end ", digest, "\n"));
}

absl::StatusOr<Seal> ReadSeal(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / kSealFile).string();
  absl::StatusOr<std::string> text = ReadSmallFile(path, 16 << 20);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) {
      return absl::DataLossError(
          absl::StrCat("snapshot ", dir, " has no seal (", kSealFile,
                       "): it was never completely written"));
    }
    return text.status();
  }
  auto bad = [&](size_t line, absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat(path, ":", line, ": ", what, ": the seal is damaged"));
  };
  Seal seal;
  std::vector<absl::string_view> lines =
      absl::StrSplit(*text, '\n', absl::SkipEmpty());
  if (lines.size() < 4 || lines[0] != kSealHeader) {
    return bad(1, "not a snapshot seal");
  }
  if (!absl::ConsumePrefix(&lines.back(), "end ")) {
    return bad(lines.size(), "no end line");
  }
  const size_t body_size = text->rfind("end ");
  PASSERELLE_ASSIGN_OR_RETURN(
      std::string digest,
      HashText(absl::string_view(*text).substr(0, body_size)));
  if (digest != lines.back()) {
    return bad(lines.size(), "its checksum does not match its lines");
  }
  for (size_t i = 1; i + 1 < lines.size(); ++i) {
    std::vector<absl::string_view> f = absl::StrSplit(lines[i], ' ');
    if (f.size() == 2 && f[0] == "site") {
      seal.site = std::string(f[1]);
    } else if (f.size() == 2 && f[0] == "version") {
      seal.version = std::string(f[1]);
    } else if (f.size() == 4 && f[0] == "file") {
      SealedFile sf;
      sf.path = std::string(f[1]);
      sf.sha256_hex = std::string(f[3]);
      if (!absl::SimpleAtoi(f[2], &sf.size) || sf.path.empty() ||
          sf.path.find("..") != std::string::npos || sf.path[0] == '/') {
        return bad(i + 1, "bad file line");
      }
      seal.files.push_back(std::move(sf));
    } else {
      return bad(i + 1, "unknown line");
    }
  }
  if (seal.site.empty() || seal.version.empty() || seal.files.empty()) {
    return bad(1, "site, version or files missing");
  }
  return seal;
}

absl::StatusOr<Seal> VerifySeal(const std::string& dir, bool contents) {
  PASSERELLE_ASSIGN_OR_RETURN(Seal seal, ReadSeal(dir));
  for (const SealedFile& f : seal.files) {
    const std::string file = (std::filesystem::path(dir) / f.path).string();
    struct stat st;
    if (stat(file.c_str(), &st) != 0) {
      return absl::DataLossError(
          absl::StrCat("snapshot ", dir, ": sealed file ", f.path,
                       " is missing: ", std::strerror(errno)));
    }
    if (static_cast<uint64_t>(st.st_size) != f.size) {
      return absl::DataLossError(absl::StrCat(
          "snapshot ", dir, ": sealed file ", f.path, " has ", st.st_size,
          " bytes, the seal says ", f.size, " (truncated or overwritten)"));
    }
  }
  if (contents) {
    for (const SealedFile& f : seal.files) {
      uint64_t size = 0;
      std::string hex;
      PASSERELLE_RETURN_IF_ERROR(
          HashFile((std::filesystem::path(dir) / f.path).string(),
                   /*sync=*/false, &size, &hex));
      if (size != f.size || hex != f.sha256_hex) {
        return absl::DataLossError(
            absl::StrCat("snapshot ", dir, ": sealed file ", f.path,
                         " does not match its checksum (SHA-256 ", hex,
                         ", the seal says ", f.sha256_hex, ")"));
      }
    }
  }
  return seal;
}

}  // namespace passerelle::node
