#include "dropkit/core/atomic_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

namespace dropkit {
namespace {

namespace fs = std::filesystem;

// The operating system's text for an errno value ("Permission denied"); unlike strerror it is
// safe to call from several threads at once.
std::string reason(int err) {
  return std::system_category().message(err);
}

[[noreturn]] void fail_io(std::string_view verb, const fs::path& path, int err) {
  throw std::runtime_error(fmt::format("cannot {} {}: {}", verb, path.string(), reason(err)));
}

[[noreturn]] void fail_dir(const fs::path& dir, std::string_view why) {
  throw std::runtime_error(
      fmt::format("output directory {} is not writable: {}", dir.string(), why));
}

// Distinguishes the temporary files of concurrent writes from one process (the pid alone would
// let two threads writing the same path clobber each other's temporary file).
std::string unique_suffix() {
  static std::atomic<unsigned> counter{0};
  return fmt::format("{}.{}", static_cast<long>(::getpid()), counter.fetch_add(1));
}

// Closes a file descriptor on scope exit unless released first.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  void release() { fd_ = -1; }
  // Closes now and reports the result, since close() can surface a deferred write error.
  int close() {
    const int result = ::close(fd_);
    fd_ = -1;
    return result;
  }

 private:
  int fd_;
};

// Writes all of `bytes`, retrying partial writes and EINTR. Returns 0 or an errno value.
int write_all(int fd, std::string_view bytes) {
  const char* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return 0;
}

void fsync_dir_best_effort(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void check_replaceable(const fs::path& path) {
  // Only a regular file (or nothing) is replaced: the rename would otherwise swap a device
  // (/dev/null for a root user), a named pipe or a socket for a regular file. A symbolic link
  // is judged by what it points to, and then replaced itself, as any rename does.
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    throw std::runtime_error(fmt::format(
        "cannot write {}: it exists and is not a regular file (a device, pipe or directory); "
        "name a new file",
        path.string()));
  }
}

void write_file_atomic(const fs::path& path, std::string_view bytes) {
  if (!path.has_filename()) fail_io("write", path, EISDIR);
  check_replaceable(path);
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const fs::path tmp = dir / fmt::format(".{}.tmp.{}", path.filename().string(), unique_suffix());

  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
  if (fd.get() < 0) fail_io("write", path, errno);
  int err = write_all(fd.get(), bytes);
  if (err == 0 && ::fsync(fd.get()) != 0) err = errno;
  if (fd.close() != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    fail_io("write", path, err);
  }
  // The rename is already visible; this only makes it survive a power cut, so its failure is not
  // worth failing a write that readers can already see.
  fsync_dir_best_effort(dir);
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) {
    const bool same = fs::equivalent(a, b, ec);
    if (!ec) return same;
  }
  const fs::path ca = fs::weakly_canonical(fs::absolute(a, ec), ec);
  const fs::path cb = fs::weakly_canonical(fs::absolute(b, ec), ec);
  return !ec && ca == cb;
}

void check_outputs_distinct(std::span<const NamedPath> inputs, std::span<const NamedPath> outputs) {
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const NamedPath& out = outputs[i];
    if (out.path.empty()) continue;
    const auto clash = [&](const NamedPath& other, const char* role) {
      if (other.path.empty() || !same_file(out.path, other.path)) return;
      throw std::invalid_argument(fmt::format(
          "{} {} is the same file as {} {} ({}); writing it would {}: name another file", out.what,
          out.path.string(), other.what, other.path.string(), role,
          std::string_view(role) == "an input" ? "destroy what is read" : "replace the other"));
    };
    for (const NamedPath& in : inputs) clash(in, "an input");
    for (std::size_t j = 0; j < i; ++j) clash(outputs[j], "another output");
  }
}

int open_regular_file(const fs::path& path) {
  // O_NONBLOCK: opening a named pipe for reading would otherwise wait for a writer. Whether it
  // is a regular file is then asked of what was opened (no window for a swap between the two).
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) fail_io("read", path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail_io("read", path, errno);
  if (!S_ISREG(st.st_mode)) {
    throw std::runtime_error(fmt::format(
        "cannot read {}: it is not a regular file ({}; only regular files are read)", path.string(),
        S_ISFIFO(st.st_mode)  ? "a named pipe"
        : S_ISDIR(st.st_mode) ? "a directory"
                              : "a device or socket"));
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    fail_io("read", path, errno);
  }
  const int out = fd.get();
  fd.release();
  return out;
}

std::string read_file(const fs::path& path) {
  Fd fd(open_regular_file(path));
  std::string out;
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) {
    out.reserve(static_cast<std::size_t>(st.st_size));
  }
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_io("read", path, errno);
    }
    if (n == 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
  }
  return out;
}

void ensure_writable_dir(const fs::path& dir) {
  const fs::path target = dir.empty() ? fs::path(".") : dir;
  std::error_code ec;
  const fs::file_status status = fs::status(target, ec);
  if (fs::exists(status)) {
    if (!fs::is_directory(status)) fail_dir(target, "it exists and is not a directory");
  } else {
    fs::create_directories(target, ec);
    if (ec) fail_dir(target, ec.message());
  }
  const fs::path probe = target / fmt::format(".dropkit-write-probe.{}", unique_suffix());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) fail_dir(target, reason(errno));
  ::close(fd);
  if (::unlink(probe.c_str()) != 0) fail_dir(target, reason(errno));
}

DirectoryLock::DirectoryLock(const fs::path& dir) {
  fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd_ < 0) {
    throw std::runtime_error(fmt::format("cannot lock {}: {}", dir.string(), std::strerror(errno)));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    ::close(fd_);
    fd_ = -1;
    throw std::runtime_error(
        e == EWOULDBLOCK
            ? fmt::format("{} is in use by another dropkit process (it holds the directory's "
                          "lock); wait for it or choose another directory",
                          dir.string())
            : fmt::format("cannot lock {}: {}", dir.string(), std::strerror(e)));
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);  // closing drops the lock
}

}  // namespace dropkit
