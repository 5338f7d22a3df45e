// The fault-injection proxy itself, against an echo server on loopback.
#include "tests/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace passerelle::testing {
namespace {

// Echoes every byte back, one connection at a time, until destroyed.
class EchoServer {
 public:
  EchoServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(fd_, 16);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        char buf[4096];
        while (!stop_) {
          pollfd q{c, POLLIN, 0};
          if (poll(&q, 1, 50) <= 0) continue;
          const ssize_t n = recv(c, buf, sizeof(buf), 0);
          if (n <= 0) break;
          send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
        }
        close(c);
      }
    });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads up to `n` bytes within `timeout`; what arrived (maybe less), or
// "<reset>" / "<eof>" when the connection ended.
std::string Read(int fd, size_t n, absl::Duration timeout) {
  std::string out;
  const absl::Time end = absl::Now() + timeout;
  while (out.size() < n) {
    const int ms =
        static_cast<int>(absl::ToInt64Milliseconds(end - absl::Now()));
    if (ms <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0) break;
    char buf[4096];
    const ssize_t r = recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
    if (r < 0) return "<reset>";
    if (r == 0) return out.empty() ? "<eof>" : out;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

class TcpProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TcpProxyOptions o;
    o.target_port = echo_.port();
    auto p = TcpProxy::Start(o);
    ASSERT_TRUE(p.ok()) << p.status();
    proxy_ = *std::move(p);
  }
  EchoServer echo_;
  std::unique_ptr<TcpProxy> proxy_;
};

TEST_F(TcpProxyTest, ForwardsBothWays) {
  const int fd = Connect(proxy_->port());
  ASSERT_GE(fd, 0);
  send(fd, "hello", 5, 0);
  EXPECT_EQ(Read(fd, 5, absl::Seconds(5)), "hello");
  EXPECT_EQ(proxy_->stats().accepted, 1);
  EXPECT_EQ(proxy_->stats().bytes_up, 5);
  EXPECT_EQ(proxy_->stats().bytes_down, 5);
  close(fd);
}

TEST_F(TcpProxyTest, StallHoldsBytesAndRecoveryFlushesThemInOrder) {
  const int fd = Connect(proxy_->port());
  ASSERT_GE(fd, 0);
  proxy_->Stall();
  send(fd, "abc", 3, 0);
  ASSERT_TRUE(
      proxy_->WaitFor([](const TcpProxyStats& s) { return s.bytes_up == 3; },
                      absl::Seconds(5)));
  EXPECT_EQ(Read(fd, 3, absl::Milliseconds(200)), "");  // Held.
  send(fd, "def", 3, 0);
  proxy_->Forward();
  EXPECT_EQ(Read(fd, 6, absl::Seconds(5)), "abcdef");
  close(fd);
}

TEST_F(TcpProxyTest, RefuseResetsOpenAndNewConnectionsUntilRecovered) {
  const int open = Connect(proxy_->port());
  ASSERT_GE(open, 0);
  ASSERT_TRUE(proxy_->WaitFor(
      [](const TcpProxyStats& s) { return s.open == 1; }, absl::Seconds(5)));
  proxy_->Refuse();
  EXPECT_EQ(Read(open, 1, absl::Seconds(5)), "<reset>");
  close(open);
  const int refused = Connect(proxy_->port());
  ASSERT_GE(refused, 0);  // Accepted by the kernel, then reset.
  EXPECT_EQ(Read(refused, 1, absl::Seconds(5)), "<reset>");
  close(refused);
  EXPECT_TRUE(proxy_->WaitFor(
      [](const TcpProxyStats& s) { return s.reset >= 2 && s.accepted == 2; },
      absl::Seconds(5)));
  proxy_->Forward();
  const int again = Connect(proxy_->port());
  send(again, "x", 1, 0);
  EXPECT_EQ(Read(again, 1, absl::Seconds(5)), "x");
  close(again);
}

TEST_F(TcpProxyTest, DelayHoldsEachChunkAtLeastThatLong) {
  proxy_->SetDelay(absl::Milliseconds(300));
  const int fd = Connect(proxy_->port());
  ASSERT_GE(fd, 0);
  const absl::Time start = absl::Now();
  send(fd, "ping", 4, 0);
  EXPECT_EQ(Read(fd, 4, absl::Seconds(5)), "ping");
  // Delayed on the way there and on the way back.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(600));
  close(fd);
}

TEST_F(TcpProxyTest, DeadTargetLooksLikeAReset) {
  TcpProxyOptions o;
  {
    EchoServer gone;
    o.target_port = gone.port();
  }
  auto p = TcpProxy::Start(o);
  ASSERT_TRUE(p.ok());
  const int fd = Connect((*p)->port());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Read(fd, 1, absl::Seconds(5)), "<reset>");
  close(fd);
}

}  // namespace
}  // namespace passerelle::testing
