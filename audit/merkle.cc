#include "audit/merkle.h"

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace passerelle::audit {
namespace {

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using ScopedMdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

// Hashes the concatenation of `parts`. SHA-256 through EVP cannot fail short
// of memory exhaustion, which we treat as fatal like any allocation.
std::string Sha256Parts(std::initializer_list<absl::string_view> parts) {
  ScopedMdCtx ctx(EVP_MD_CTX_new());
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  bool ok = ctx != nullptr &&
            EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1;
  for (absl::string_view p : parts) {
    ok = ok && EVP_DigestUpdate(ctx.get(), p.data(), p.size()) == 1;
  }
  ok = ok && EVP_DigestFinal_ex(ctx.get(), out, &len) == 1;
  if (!ok || len != kHashSize) std::abort();
  return std::string(reinterpret_cast<const char*>(out), len);
}

// Largest power of two strictly less than n (n >= 2).
uint64_t LargestPowerOfTwoBelow(uint64_t n) {
  return uint64_t{1} << (63 - __builtin_clzll(n - 1));
}

bool IsPowerOfTwo(uint64_t n) { return n != 0 && (n & (n - 1)) == 0; }

int Log2(uint64_t power_of_two) { return __builtin_ctzll(power_of_two); }

// RFC 9162 PATH(m, D[begin:end]), m relative to begin; appends to `out`.
absl::Status Path(const NodeSource& nodes, uint64_t m, uint64_t begin,
                  uint64_t end, std::vector<std::string>* out) {
  const uint64_t n = end - begin;
  if (n <= 1) return absl::OkStatus();
  const uint64_t k = LargestPowerOfTwoBelow(n);
  if (m < k) {
    PASSERELLE_RETURN_IF_ERROR(Path(nodes, m, begin, begin + k, out));
    PASSERELLE_ASSIGN_OR_RETURN(std::string h,
                                RangeHash(nodes, begin + k, end));
    out->push_back(std::move(h));
  } else {
    PASSERELLE_RETURN_IF_ERROR(Path(nodes, m - k, begin + k, end, out));
    PASSERELLE_ASSIGN_OR_RETURN(std::string h,
                                RangeHash(nodes, begin, begin + k));
    out->push_back(std::move(h));
  }
  return absl::OkStatus();
}

// RFC 9162 SUBPROOF(m, D[begin:end], complete); appends to `out`.
absl::Status SubProof(const NodeSource& nodes, uint64_t m, uint64_t begin,
                      uint64_t end, bool complete,
                      std::vector<std::string>* out) {
  const uint64_t n = end - begin;
  if (m == n) {
    if (!complete) {
      PASSERELLE_ASSIGN_OR_RETURN(std::string h, RangeHash(nodes, begin, end));
      out->push_back(std::move(h));
    }
    return absl::OkStatus();
  }
  const uint64_t k = LargestPowerOfTwoBelow(n);
  if (m <= k) {
    PASSERELLE_RETURN_IF_ERROR(
        SubProof(nodes, m, begin, begin + k, complete, out));
    PASSERELLE_ASSIGN_OR_RETURN(std::string h,
                                RangeHash(nodes, begin + k, end));
    out->push_back(std::move(h));
  } else {
    PASSERELLE_RETURN_IF_ERROR(
        SubProof(nodes, m - k, begin + k, end, false, out));
    PASSERELLE_ASSIGN_OR_RETURN(std::string h,
                                RangeHash(nodes, begin, begin + k));
    out->push_back(std::move(h));
  }
  return absl::OkStatus();
}

absl::Status CheckHashSize(absl::string_view what, absl::string_view h) {
  if (h.size() != kHashSize) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", h.size(), " bytes, want ", kHashSize));
  }
  return absl::OkStatus();
}

absl::Status CheckProofSizes(const std::vector<std::string>& proof) {
  for (size_t i = 0; i < proof.size(); ++i) {
    PASSERELLE_RETURN_IF_ERROR(
        CheckHashSize(absl::StrCat("proof element ", i), proof[i]));
  }
  return absl::OkStatus();
}

}  // namespace

std::string Sha256(absl::string_view data) { return Sha256Parts({data}); }

std::string HashLeaf(absl::string_view leaf) {
  static constexpr char kLeafPrefix[1] = {0x00};
  return Sha256Parts({absl::string_view(kLeafPrefix, 1), leaf});
}

std::string HashChildren(absl::string_view left, absl::string_view right) {
  static constexpr char kNodePrefix[1] = {0x01};
  return Sha256Parts({absl::string_view(kNodePrefix, 1), left, right});
}

std::string EmptyRoot() { return Sha256(""); }

absl::StatusOr<std::string> RangeHash(const NodeSource& nodes, uint64_t begin,
                                      uint64_t end) {
  if (end < begin) return absl::InvalidArgumentError("range end < begin");
  const uint64_t n = end - begin;
  if (n == 0) return EmptyRoot();
  if (IsPowerOfTwo(n) && begin % n == 0) {
    const int level = Log2(n);
    return nodes.GetNode(level, begin >> level);
  }
  const uint64_t k = LargestPowerOfTwoBelow(n);
  PASSERELLE_ASSIGN_OR_RETURN(std::string left,
                              RangeHash(nodes, begin, begin + k));
  PASSERELLE_ASSIGN_OR_RETURN(std::string right,
                              RangeHash(nodes, begin + k, end));
  return HashChildren(left, right);
}

absl::StatusOr<std::string> RootAt(const NodeSource& nodes, uint64_t size) {
  return RangeHash(nodes, 0, size);
}

absl::StatusOr<std::vector<std::string>> InclusionProof(const NodeSource& nodes,
                                                        uint64_t index,
                                                        uint64_t size) {
  if (index >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("leaf index ", index, " is not below tree size ", size));
  }
  std::vector<std::string> proof;
  PASSERELLE_RETURN_IF_ERROR(Path(nodes, index, 0, size, &proof));
  return proof;
}

absl::StatusOr<std::vector<std::string>> ConsistencyProof(
    const NodeSource& nodes, uint64_t size1, uint64_t size2) {
  if (size1 == 0 || size1 > size2) {
    return absl::InvalidArgumentError(
        absl::StrCat("no consistency proof from size ", size1, " to size ",
                     size2, " (need 0 < size1 <= size2)"));
  }
  std::vector<std::string> proof;
  PASSERELLE_RETURN_IF_ERROR(SubProof(nodes, size1, 0, size2, true, &proof));
  return proof;
}

absl::StatusOr<std::string> RootFromInclusionProof(
    absl::string_view leaf_hash, uint64_t index, uint64_t size,
    const std::vector<std::string>& proof) {
  if (index >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("leaf index ", index, " is not below tree size ", size));
  }
  PASSERELLE_RETURN_IF_ERROR(CheckHashSize("leaf hash", leaf_hash));
  PASSERELLE_RETURN_IF_ERROR(CheckProofSizes(proof));
  uint64_t fn = index;
  uint64_t sn = size - 1;
  std::string r(leaf_hash);
  for (const std::string& p : proof) {
    if (sn == 0) {
      return absl::InvalidArgumentError("inclusion proof is too long");
    }
    if ((fn & 1) != 0 || fn == sn) {
      r = HashChildren(p, r);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = HashChildren(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) {
    return absl::InvalidArgumentError("inclusion proof is too short");
  }
  return r;
}

absl::Status VerifyInclusion(absl::string_view leaf_hash, uint64_t index,
                             uint64_t size,
                             const std::vector<std::string>& proof,
                             absl::string_view root) {
  PASSERELLE_ASSIGN_OR_RETURN(
      std::string computed,
      RootFromInclusionProof(leaf_hash, index, size, proof));
  PASSERELLE_RETURN_IF_ERROR(CheckHashSize("root", root));
  if (computed != root) {
    return absl::InvalidArgumentError(
        "inclusion proof does not lead to the given root");
  }
  return absl::OkStatus();
}

absl::Status VerifyConsistency(uint64_t size1, uint64_t size2,
                               const std::vector<std::string>& proof,
                               absl::string_view root1,
                               absl::string_view root2) {
  if (size1 > size2) {
    return absl::InvalidArgumentError(
        absl::StrCat("size1 ", size1, " > size2 ", size2));
  }
  if (size1 == 0) {
    // RFC 9162 §2.1.4.2 requires 0 < first: every tree extends the empty one,
    // so such a "proof" proves nothing and is refused.
    return absl::InvalidArgumentError(
        "consistency from the empty tree proves nothing (size1 = 0)");
  }
  if (size1 == size2) {
    if (!proof.empty()) {
      return absl::InvalidArgumentError(
          "sizes are equal but the proof is not empty");
    }
    if (root1 != root2) {
      return absl::InvalidArgumentError("sizes are equal but roots differ");
    }
    return absl::OkStatus();
  }
  if (proof.empty()) {
    return absl::InvalidArgumentError("consistency proof is empty");
  }
  PASSERELLE_RETURN_IF_ERROR(CheckHashSize("root1", root1));
  PASSERELLE_RETURN_IF_ERROR(CheckHashSize("root2", root2));
  PASSERELLE_RETURN_IF_ERROR(CheckProofSizes(proof));

  std::vector<std::string> path;
  path.reserve(proof.size() + 1);
  if (IsPowerOfTwo(size1)) path.emplace_back(root1);
  path.insert(path.end(), proof.begin(), proof.end());

  uint64_t fn = size1 - 1;
  uint64_t sn = size2 - 1;
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
  std::string fr = path[0];
  std::string sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const std::string& c = path[i];
    if (sn == 0) {
      return absl::InvalidArgumentError("consistency proof is too long");
    }
    if ((fn & 1) != 0 || fn == sn) {
      fr = HashChildren(c, fr);
      sr = HashChildren(c, sr);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = HashChildren(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) {
    return absl::InvalidArgumentError("consistency proof is too short");
  }
  if (fr != root1) {
    return absl::InvalidArgumentError(
        "consistency proof does not lead to root1");
  }
  if (sr != root2) {
    return absl::InvalidArgumentError(
        "consistency proof does not lead to root2");
  }
  return absl::OkStatus();
}

InMemoryTree::InMemoryTree(const std::vector<std::string>& leaf_hashes) {
  for (const std::string& h : leaf_hashes) AppendLeafHash(h);
}

void InMemoryTree::AppendLeafHash(std::string leaf_hash) {
  if (levels_.empty()) levels_.emplace_back();
  levels_[0].push_back(std::move(leaf_hash));
  // Complete every perfect subtree the new leaf closes.
  size_t level = 0;
  while (levels_[level].size() % 2 == 0) {
    const std::vector<std::string>& row = levels_[level];
    std::string parent = HashChildren(row[row.size() - 2], row[row.size() - 1]);
    if (levels_.size() == level + 1) levels_.emplace_back();
    levels_[level + 1].push_back(std::move(parent));
    ++level;
  }
}

std::string InMemoryTree::Root() const {
  absl::StatusOr<std::string> root = RootAt(*this, size());
  // Every node below size() exists, so this cannot fail.
  if (!root.ok()) std::abort();
  return *std::move(root);
}

absl::StatusOr<std::string> InMemoryTree::GetNode(int level,
                                                  uint64_t index) const {
  if (level < 0 || static_cast<size_t>(level) >= levels_.size() ||
      index >= levels_[level].size()) {
    return absl::NotFoundError(
        absl::StrCat("no node at level ", level, " index ", index));
  }
  return levels_[level][index];
}

std::string RootOfLeafHashes(const std::vector<std::string>& leaf_hashes) {
  return InMemoryTree(leaf_hashes).Root();
}

}  // namespace passerelle::audit
