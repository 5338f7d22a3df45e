// RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification.
//
// Hashes are 32-byte SHA-256 digests held in std::string. A leaf hashes as
// SHA-256(0x00 || leaf), an interior node as SHA-256(0x01 || left || right),
// and the empty tree as SHA-256("").
//
// Proof generation works over any source of "perfect subtree" hashes (a
// `NodeSource`), so the same code serves the in-memory tree used in tests and
// verification, and the on-disk tree of the audit log.
#ifndef PASSERELLE_AUDIT_MERKLE_H_
#define PASSERELLE_AUDIT_MERKLE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace passerelle::audit {

inline constexpr size_t kHashSize = 32;

// SHA-256 of `data` through OpenSSL EVP.
std::string Sha256(absl::string_view data);
// SHA-256(0x00 || leaf).
std::string HashLeaf(absl::string_view leaf);
// SHA-256(0x01 || left || right).
std::string HashChildren(absl::string_view left, absl::string_view right);
// SHA-256 of the empty string: the root of the empty tree.
std::string EmptyRoot();

// A source of perfect-subtree hashes. Node (level, index) covers leaves
// [index << level, (index + 1) << level); level 0 is the leaf hash.
// Implementations must be safe to call concurrently if shared.
class NodeSource {
 public:
  virtual ~NodeSource() = default;
  virtual absl::StatusOr<std::string> GetNode(int level,
                                              uint64_t index) const = 0;
};

// Hash of leaves [begin, end) where the range is a subtree of the RFC 6962
// recursion (begin a multiple of the largest power of two < end - begin,
// or 0). The empty range hashes to EmptyRoot().
absl::StatusOr<std::string> RangeHash(const NodeSource& nodes, uint64_t begin,
                                      uint64_t end);
// Root of the tree of the first `size` leaves.
absl::StatusOr<std::string> RootAt(const NodeSource& nodes, uint64_t size);

// RFC 9162 §2.1.3.1 inclusion proof of leaf `index` in the tree of `size`
// leaves. InvalidArgument unless index < size.
absl::StatusOr<std::vector<std::string>> InclusionProof(const NodeSource& nodes,
                                                        uint64_t index,
                                                        uint64_t size);
// RFC 9162 §2.1.4.1 consistency proof from `size1` to `size2`. Empty when
// size1 == size2; InvalidArgument when size1 == 0 or size1 > size2.
absl::StatusOr<std::vector<std::string>> ConsistencyProof(
    const NodeSource& nodes, uint64_t size1, uint64_t size2);

// RFC 9162 §2.1.3.2. OK iff `proof` proves `leaf_hash` is leaf `index` of the
// tree of `size` leaves with root `root`. Hashes must be 32 bytes.
absl::Status VerifyInclusion(absl::string_view leaf_hash, uint64_t index,
                             uint64_t size,
                             const std::vector<std::string>& proof,
                             absl::string_view root);
// Root implied by an inclusion proof (the verifier's first half).
absl::StatusOr<std::string> RootFromInclusionProof(
    absl::string_view leaf_hash, uint64_t index, uint64_t size,
    const std::vector<std::string>& proof);

// RFC 9162 §2.1.4.2. OK iff `proof` shows the tree of size1 with root1 is a
// prefix of the tree of size2 with root2. Requires 0 < size1 <= size2; equal
// sizes need an empty proof and equal roots.
absl::Status VerifyConsistency(uint64_t size1, uint64_t size2,
                               const std::vector<std::string>& proof,
                               absl::string_view root1,
                               absl::string_view root2);

// An in-memory tree over a list of leaf hashes, with every perfect subtree
// precomputed. Immutable after construction except Append; not thread-safe
// for concurrent Append.
class InMemoryTree : public NodeSource {
 public:
  InMemoryTree() = default;
  explicit InMemoryTree(const std::vector<std::string>& leaf_hashes);

  void AppendLeafHash(std::string leaf_hash);
  uint64_t size() const { return levels_.empty() ? 0 : levels_[0].size(); }
  std::string Root() const;

  absl::StatusOr<std::string> GetNode(int level, uint64_t index) const override;
  // Perfect subtree hashes by level (levels_[0] are the leaf hashes).
  const std::vector<std::vector<std::string>>& levels() const {
    return levels_;
  }

 private:
  std::vector<std::vector<std::string>> levels_;
};

// Root of a list of leaf hashes (convenience over InMemoryTree).
std::string RootOfLeafHashes(const std::vector<std::string>& leaf_hashes);

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_MERKLE_H_
