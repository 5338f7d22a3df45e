#include "common/refusal_limiter.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace passerelle {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1800000000);

RefusalLimiterOptions Options() {
  RefusalLimiterOptions o;
  o.per_second = 1;
  o.burst = 3;
  o.summary_period = absl::Seconds(60);
  o.max_identities = 4;
  return o;
}

TEST(RefusalLimiterTest, BurstThenCountedIntoOneSummaryPerPeriod) {
  FakeClock clock(kStart);
  RefusalLimiter limiter(Options(), &clock);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Admit("mallory")) << i;
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(limiter.Admit("mallory"));
  // Another identity has its own bucket.
  EXPECT_TRUE(limiter.Admit("alice"));
  EXPECT_EQ(limiter.aggregated(), 1000u);
  EXPECT_TRUE(limiter.TakeDue().empty());  // The period has not ended.
  clock.Advance(absl::Seconds(59));
  EXPECT_TRUE(limiter.TakeDue().empty());
  clock.Advance(absl::Seconds(1));
  std::vector<RefusalLimiter::Summary> due = limiter.TakeDue();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].identity, "mallory");
  EXPECT_EQ(due[0].count, 1000u);
  EXPECT_EQ(due[0].first, kStart);
  EXPECT_EQ(due[0].last, kStart);
  EXPECT_TRUE(limiter.TakeDue().empty());  // Handed out once.
  EXPECT_EQ(limiter.summaries(), 1u);
  EXPECT_EQ(limiter.aggregated(), 1000u);  // The counter stays.
}

TEST(RefusalLimiterTest, RefillsAtTheRate) {
  FakeClock clock(kStart);
  RefusalLimiter limiter(Options(), &clock);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Admit("m"));
  EXPECT_FALSE(limiter.Admit("m"));
  clock.Advance(absl::Milliseconds(999));
  EXPECT_FALSE(limiter.Admit("m"));
  clock.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(limiter.Admit("m"));
  EXPECT_FALSE(limiter.Admit("m"));
  // Never above the burst, however long the pause.
  clock.Advance(absl::Hours(10));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Admit("m"));
  EXPECT_FALSE(limiter.Admit("m"));
  EXPECT_EQ(limiter.TakeAll().size(), 1u);
}

TEST(RefusalLimiterTest, IdentitiesTrackedAreBounded) {
  FakeClock clock(kStart);
  RefusalLimiter limiter(Options(), &clock);
  // Four identities exhaust their buckets: none is idle.
  for (int id = 0; id < 4; ++id) {
    for (int i = 0; i < 4; ++i) limiter.Admit(absl::StrCat("id", id));
  }
  // Any number of new identities: counted together.
  for (int id = 4; id < 1000; ++id) {
    EXPECT_FALSE(limiter.Admit(absl::StrCat("id", id)));
  }
  EXPECT_LE(limiter.tracked(), 5u);
  clock.Advance(absl::Seconds(60));
  std::vector<RefusalLimiter::Summary> due = limiter.TakeDue();
  uint64_t others = 0;
  for (const auto& s : due) {
    if (s.identity == RefusalLimiter::kOtherIdentities) others = s.count;
  }
  EXPECT_EQ(others, 996u);
  // Once idle (full again, nothing pending), buckets are dropped for new
  // identities.
  clock.Advance(absl::Seconds(10));
  EXPECT_TRUE(limiter.Admit("newcomer"));
  EXPECT_LE(limiter.tracked(), 5u);
}

}  // namespace
}  // namespace passerelle
