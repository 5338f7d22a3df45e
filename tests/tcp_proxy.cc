#include "tests/tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <future>
#include <list>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace passerelle::testing {
namespace {

struct Chunk {
  absl::Time due;
  std::string bytes;
};

// One direction of a connection: bytes read from `from`, queued, written to
// the other side.
struct Pipe {
  std::deque<Chunk> queue;
  size_t offset = 0;  // Into queue.front().
  bool eof = false;   // The reading side closed.
  bool shut = false;  // The writing side got shutdown(SHUT_WR).
};

void SetNonBlocking(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
}

// Closes with an RST rather than a FIN.
void ResetAndClose(int fd) {
  if (fd < 0) return;
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  close(fd);
}

absl::StatusOr<sockaddr_in> Ipv4(const std::string& host, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an IPv4 literal: ", host));
  }
  return a;
}

absl::Status EnterNetns(const std::string& name) {
  if (name.empty()) return absl::OkStatus();
  const std::string path = "/var/run/netns/" + name;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", path, ": ", strerror(errno)));
  }
  const int rc = setns(fd, CLONE_NEWNET);  // This thread only.
  const int err = errno;
  close(fd);
  if (rc != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("setns ", name, ": ", strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace

struct TcpProxy::Conn {
  int client = -1;
  int upstream = -1;
  bool connected = false;  // The upstream connect completed.
  Pipe up;                 // client -> upstream
  Pipe down;               // upstream -> client
};

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(
    const TcpProxyOptions& options) {
  absl::StatusOr<sockaddr_in> listen_addr = Ipv4(options.listen_host, 0);
  if (!listen_addr.ok()) return listen_addr.status();
  if (!Ipv4(options.target_host, options.target_port).ok() ||
      options.target_port <= 0) {
    return absl::InvalidArgumentError("tcp proxy: bad target");
  }
  std::unique_ptr<TcpProxy> proxy(new TcpProxy());
  proxy->options_ = options;
  if (pipe2(proxy->wake_, O_NONBLOCK | O_CLOEXEC) != 0) {
    return absl::InternalError("tcp proxy: pipe");
  }
  // The socket is made on the thread that will own it, in its namespace.
  std::promise<absl::Status> ready;
  std::future<absl::Status> started = ready.get_future();
  TcpProxy* p = proxy.get();
  p->thread_ =
      std::thread([p, ready = std::move(ready), listen_addr]() mutable {
        absl::Status st = EnterNetns(p->options_.netns);
        if (st.ok()) {
          p->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          sockaddr_in a = *listen_addr;
          socklen_t len = sizeof(a);
          if (p->listen_fd_ < 0 ||
              bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) !=
                  0 ||
              listen(p->listen_fd_, 64) != 0 ||
              getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&a),
                          &len) != 0) {
            st = absl::InternalError(absl::StrCat("tcp proxy: listen on ",
                                                  p->options_.listen_host, ": ",
                                                  strerror(errno)));
          } else {
            SetNonBlocking(p->listen_fd_);
            p->port_ = ntohs(a.sin_port);
          }
        }
        ready.set_value(st);  // The thread owns the promise.
        if (st.ok()) p->Run();
      });
  absl::Status st = started.get();
  if (!st.ok()) {
    proxy->thread_.join();
    return st;
  }
  return proxy;
}

TcpProxy::~TcpProxy() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  close(wake_[0]);
  close(wake_[1]);
}

std::string TcpProxy::address() const {
  return absl::StrCat(options_.listen_host, ":", port_);
}

void TcpProxy::Wake() {
  const char c = 1;
  (void)!write(wake_[1], &c, 1);
}

void TcpProxy::Forward() {
  {
    absl::MutexLock lock(&mu_);
    mode_ = Mode::kForward;
  }
  Wake();
}

void TcpProxy::Stall() {
  {
    absl::MutexLock lock(&mu_);
    mode_ = Mode::kStall;
  }
  Wake();
}

void TcpProxy::Refuse() {
  {
    absl::MutexLock lock(&mu_);
    mode_ = Mode::kRefuse;
  }
  Wake();
}

void TcpProxy::SetDelay(absl::Duration delay) {
  {
    absl::MutexLock lock(&mu_);
    delay_ = delay;
  }
  Wake();
}

TcpProxy::Mode TcpProxy::mode() const {
  absl::MutexLock lock(&mu_);
  return mode_;
}

TcpProxyStats TcpProxy::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

bool TcpProxy::WaitFor(const std::function<bool(const TcpProxyStats&)>& pred,
                       absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  struct Args {
    const std::function<bool(const TcpProxyStats&)>* pred;
    const TcpProxyStats* stats;
  } args{&pred, &stats_};
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](Args* a) { return (*a->pred)(*a->stats); }, &args),
      timeout);
}

void TcpProxy::Run() {
  std::list<Conn> conns;
  auto close_conn = [&](std::list<Conn>::iterator it, bool reset) {
    if (reset) {
      ResetAndClose(it->client);
      ResetAndClose(it->upstream);
    } else {
      close(it->client);
      if (it->upstream >= 0) close(it->upstream);
    }
    {
      absl::MutexLock lock(&mu_);
      --stats_.open;
      if (reset) ++stats_.reset;
    }
    return conns.erase(it);
  };
  // Reads what `fd` has into `pipe`; false on error (the caller resets).
  auto read_into = [&](int fd, Pipe& pipe, absl::Duration delay, bool up) {
    char buf[16384];
    while (true) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n > 0) {
        pipe.queue.push_back({absl::Now() + delay, std::string(buf, n)});
        absl::MutexLock lock(&mu_);
        (up ? stats_.bytes_up : stats_.bytes_down) += n;
        continue;
      }
      if (n == 0) {
        pipe.eof = true;
        return true;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      if (errno == EINTR) continue;
      return false;
    }
  };
  // Writes the due chunks of `pipe` to `fd`; false on error.
  auto write_from = [&](int fd, Pipe& pipe, absl::Time now) {
    while (!pipe.queue.empty() && pipe.queue.front().due <= now) {
      const std::string& b = pipe.queue.front().bytes;
      const ssize_t n = send(fd, b.data() + pipe.offset, b.size() - pipe.offset,
                             MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        if (errno == EINTR) continue;
        return false;
      }
      pipe.offset += static_cast<size_t>(n);
      if (pipe.offset == b.size()) {
        pipe.queue.pop_front();
        pipe.offset = 0;
      }
    }
    if (pipe.queue.empty() && pipe.eof && !pipe.shut) {
      shutdown(fd, SHUT_WR);
      pipe.shut = true;
    }
    return true;
  };

  while (true) {
    Mode mode;
    absl::Duration delay;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      mode = mode_;
      delay = delay_;
    }
    if (mode == Mode::kRefuse) {
      for (auto it = conns.begin(); it != conns.end();) {
        it = close_conn(it, /*reset=*/true);
      }
    }
    const absl::Time now = absl::Now();
    const bool forwarding = mode == Mode::kForward;
    // Writes first (what became due), then poll.
    for (auto it = conns.begin(); it != conns.end();) {
      bool ok = true;
      if (forwarding && it->connected) {
        ok = write_from(it->upstream, it->up, now) &&
             write_from(it->client, it->down, now);
      }
      const bool finished = it->up.shut && it->down.shut;
      if (!ok || finished) {
        it = close_conn(it, !ok);
      } else {
        ++it;
      }
    }
    std::vector<pollfd> fds;
    fds.push_back({wake_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    absl::Time next_due = absl::InfiniteFuture();
    for (Conn& c : conns) {
      short up_events = 0;
      if (!c.connected) {
        up_events = POLLOUT;
      } else {
        if (!c.down.eof) up_events |= POLLIN;
        if (forwarding && !c.up.queue.empty()) {
          if (c.up.queue.front().due <= now) {
            up_events |= POLLOUT;
          } else {
            next_due = std::min(next_due, c.up.queue.front().due);
          }
        }
      }
      short client_events = c.up.eof ? 0 : POLLIN;
      if (forwarding && c.connected && !c.down.queue.empty()) {
        if (c.down.queue.front().due <= now) {
          client_events |= POLLOUT;
        } else {
          next_due = std::min(next_due, c.down.queue.front().due);
        }
      }
      // A socket with nothing to wait for is left out (fd -1): a peer
      // that hung up would otherwise wake poll at once, again and again.
      fds.push_back({client_events ? c.client : -1, client_events, 0});
      fds.push_back({up_events ? c.upstream : -1, up_events, 0});
    }
    int timeout_ms = -1;
    if (next_due != absl::InfiniteFuture()) {
      timeout_ms = static_cast<int>(
          std::max<int64_t>(1, absl::ToInt64Milliseconds(next_due - now) + 1));
    }
    if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      char buf[64];
      while (read(wake_[0], buf, sizeof(buf)) > 0) {
      }
    }
    // Existing connections (in the order their pollfds were pushed).
    size_t i = 2;
    for (auto it = conns.begin(); it != conns.end(); i += 2) {
      const pollfd& cfd = fds[i];
      const pollfd& ufd = fds[i + 1];
      bool ok = true;
      if (!it->connected && (ufd.revents & (POLLOUT | POLLERR | POLLHUP))) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(it->upstream, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == 0) {
          it->connected = true;
        } else {
          ok = false;  // Target down: the client sees a reset.
        }
      } else if (it->connected &&
                 (ufd.revents & (POLLIN | POLLERR | POLLHUP))) {
        ok = read_into(it->upstream, it->down, delay, /*up=*/false);
      }
      if (ok && (cfd.revents & (POLLIN | POLLERR | POLLHUP))) {
        ok = read_into(it->client, it->up, delay, /*up=*/true);
      }
      if (!ok) {
        it = close_conn(it, /*reset=*/true);
      } else {
        ++it;
      }
    }
    // New connections.
    if (fds[1].revents & POLLIN) {
      while (true) {
        const int fd =
            accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        bool refuse;
        {
          // The mode now, not the one this turn started with: a Forward()
          // that woke this poll must not see its first connection reset.
          absl::MutexLock lock(&mu_);
          refuse = mode_ == Mode::kRefuse;
          ++stats_.accepted;
          stats_.accept_times.push_back(absl::Now());
          if (refuse) ++stats_.reset;
        }
        if (refuse) {
          ResetAndClose(fd);
          continue;
        }
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        Conn c;
        c.client = fd;
        c.upstream =
            socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        setsockopt(c.upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        sockaddr_in target = *Ipv4(options_.target_host, options_.target_port);
        const int rc = connect(c.upstream, reinterpret_cast<sockaddr*>(&target),
                               sizeof(target));
        if (rc != 0 && errno != EINPROGRESS) {
          ResetAndClose(c.client);
          close(c.upstream);
          absl::MutexLock lock(&mu_);
          ++stats_.reset;
          continue;
        }
        c.connected = rc == 0;
        conns.push_back(std::move(c));
        absl::MutexLock lock(&mu_);
        ++stats_.open;
      }
    }
  }
  for (auto it = conns.begin(); it != conns.end();) {
    it = close_conn(it, /*reset=*/true);
  }
}

}  // namespace passerelle::testing
