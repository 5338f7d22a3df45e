#include "privacy/random.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace passerelle::privacy {
namespace {

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  if (code == 0) return "no OpenSSL error queued";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

int BitLength(unsigned __int128 x) {
  int bits = 0;
  while (x != 0) {
    ++bits;
    x >>= 1;
  }
  return bits;
}

}  // namespace

OpenSslRandomSource::~OpenSslRandomSource() {
  absl::MutexLock lock(&mu_);
  OPENSSL_cleanse(buffer_, sizeof(buffer_));
}

absl::Status OpenSslRandomSource::Fill(absl::Span<uint8_t> out) {
  absl::MutexLock lock(&mu_);
  size_t done = 0;
  while (done < out.size()) {
    if (available_ == 0) {
      if (RAND_priv_bytes(buffer_, static_cast<int>(kBufferSize)) != 1) {
        // Fail closed: the caller's query stops; the partial output is wiped.
        OPENSSL_cleanse(out.data(), out.size());
        return absl::UnavailableError(absl::StrCat(
            "OpenSSL RAND_priv_bytes failed, refusing to release noise: ",
            OpenSslError()));
      }
      available_ = kBufferSize;
    }
    const size_t n = std::min(available_, out.size() - done);
    uint8_t* src = buffer_ + (kBufferSize - available_);
    std::memcpy(out.data() + done, src, n);
    // Bytes handed out are erased so they are never reused or left behind.
    OPENSSL_cleanse(src, n);
    available_ -= n;
    done += n;
  }
  return absl::OkStatus();
}

absl::StatusOr<unsigned __int128> UniformBelow128(RandomSource& random,
                                                  unsigned __int128 n) {
  if (n == 0) return absl::InvalidArgumentError("UniformBelow: n must be > 0");
  if (n == 1) return 0;
  const int bits = BitLength(n - 1);
  const int bytes = (bits + 7) / 8;
  const unsigned __int128 mask =
      bits == 128 ? ~static_cast<unsigned __int128>(0)
                  : ((static_cast<unsigned __int128>(1) << bits) - 1);
  uint8_t buf[16];
  // Each attempt succeeds with probability > 1/2; the loop ends quickly.
  while (true) {
    absl::Status s = random.Fill(absl::MakeSpan(buf, bytes));
    if (!s.ok()) return s;
    unsigned __int128 x = 0;
    for (int i = 0; i < bytes; ++i) x = (x << 8) | buf[i];
    x &= mask;
    if (x < n) return x;
  }
}

absl::StatusOr<uint64_t> UniformBelow(RandomSource& random, uint64_t n) {
  absl::StatusOr<unsigned __int128> x = UniformBelow128(random, n);
  if (!x.ok()) return x.status();
  return static_cast<uint64_t>(*x);
}

}  // namespace passerelle::privacy
