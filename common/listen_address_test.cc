#include "common/listen_address.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle {
namespace {

using ::testing::HasSubstr;

TEST(ListenAddressTest, NamedInterfacesPass) {
  for (const std::string listen :
       {"127.0.0.1:0", "127.0.0.2:7443", "[::1]:0", "localhost:7443",
        "192.0.2.10:7443", "[2001:db8::1]:7443", "unix:/run/passerelle/s",
        "unix-abstract:passerelle"}) {
    EXPECT_TRUE(CheckListenAddress("node config", listen, false).ok())
        << listen << ": " << CheckListenAddress("node config", listen, false);
  }
}

TEST(ListenAddressTest, EveryInterfaceNeedsTheOptIn) {
  for (const std::string listen :
       {"0.0.0.0:7443", "[::]:7443", ":7443", "0:7443", "[::ffff:0.0.0.0]:1",
        "[0:0:0:0:0:0:0:0]:1", "*:7443", ":::7443"}) {
    absl::Status s = CheckListenAddress("node config", listen, false);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << listen;
    EXPECT_THAT(s.message(), HasSubstr("node config"));
    EXPECT_THAT(s.message(), HasSubstr("\"" + listen + "\""));
    EXPECT_THAT(s.message(), HasSubstr("listen_all_interfaces"));
    EXPECT_TRUE(CheckListenAddress("node config", listen, true).ok()) << listen;
  }
}

TEST(ListenAddressTest, MalformedAddressesAreNamed) {
  for (const std::string listen : {"7443", "[::1]7443", "[::1"}) {
    absl::Status s = CheckListenAddress("gateway config", listen, true);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << listen;
    EXPECT_THAT(s.message(), HasSubstr(listen));
  }
  EXPECT_EQ(CheckListenAddress("gateway config", "", true).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace passerelle
