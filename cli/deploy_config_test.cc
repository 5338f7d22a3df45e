// The example configuration files shipped in deploy/config parse into their
// messages (so a renamed field cannot leave a broken example behind).
#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/textproto.h"
#include "gateway/gateway_server.h"
#include "gtest/gtest.h"
#include "node/node_server.h"
#include "passerelle/v1/config.pb.h"

namespace passerelle {
namespace {

std::string ConfigDir() {
  const char* src = std::getenv("PASSERELLE_SOURCE_DIR");
  return src == nullptr ? "" : std::string(src) + "/deploy/config";
}

template <typename Message>
void ExpectParses(const std::string& name, Message* m) {
  const std::string path = ConfigDir() + "/" + name;
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  absl::Status s = LoadTextProtoFile(path, m);
  EXPECT_TRUE(s.ok()) << s;
}

TEST(DeployConfigTest, ExamplesParse) {
  if (ConfigDir().empty()) GTEST_SKIP() << "PASSERELLE_SOURCE_DIR is not set";
  v1::NodeConfig fr, qc;
  ExpectParses("node-fr.textproto", &fr);
  ExpectParses("node-qc.textproto", &qc);
  EXPECT_EQ(fr.site(), "fr");
  EXPECT_EQ(qc.site(), "qc");
  EXPECT_FALSE(fr.policy_files().empty());
  v1::GatewayConfig gw;
  ExpectParses("gateway.textproto", &gw);
  EXPECT_EQ(gw.sites_size(), 2);
  EXPECT_FALSE(gw.tls().crl_dir().empty());
  // Complete, and each listen address names an interface or says
  // listen_all_interfaces.
  EXPECT_TRUE(node::ValidateNodeConfig(fr).ok())
      << node::ValidateNodeConfig(fr);
  EXPECT_TRUE(node::ValidateNodeConfig(qc).ok())
      << node::ValidateNodeConfig(qc);
  EXPECT_TRUE(gateway::ValidateGatewayConfig(gw).ok())
      << gateway::ValidateGatewayConfig(gw);
  v1::ClientConfig alice;
  ExpectParses("client-alice.textproto", &alice);
  EXPECT_EQ(alice.project(), "diabetes-fr-qc");
}

}  // namespace
}  // namespace passerelle
