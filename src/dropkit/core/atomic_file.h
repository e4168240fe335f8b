// Whole-file reads and crash-safe whole-file writes.
//
// Everything dropkit saves (checkpoints, metrics, reports) is written with write_file_atomic, so a
// reader never sees a half-written file and a crash or a full disk mid-write leaves the previous
// version intact. Every failure is a std::runtime_error whose one-line message names the file and
// the operating system's reason, e.g. "cannot write /x/y.json: Permission denied".
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace dropkit {

// Writes `bytes` to a temporary file in the directory of `path` (".<filename>.tmp.<pid>.<n>"),
// flushes and fsyncs it, then renames it over `path`, which is atomic on POSIX file systems. The
// directory is fsynced afterwards on a best-effort basis. On failure the temporary file is
// removed, `path` is left untouched, and std::runtime_error("cannot write <path>: <reason>") is
// thrown. The new file gets mode 0666 minus the umask, like any freshly created file. An existing
// `path` that is not a regular file (a device such as /dev/null, a named pipe, a directory) is
// never replaced: std::runtime_error naming it, nothing written.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// Throws what write_file_atomic would for a `path` it must not replace (an existing non-regular
// file): for checking an output before the work that produces it.
void check_replaceable(const std::filesystem::path& path);

// A file a command reads or writes, and what it is to the command ("--out", "the model's
// checkpoint"): for messages.
struct NamedPath {
  std::string what;
  std::filesystem::path path;
};

// True when `a` and `b` name the same file: the same inode if both exist (hard and symbolic
// links included), else the same path once "..", "." and the links of the existing part are
// resolved.
bool same_file(const std::filesystem::path& a, const std::filesystem::path& b);

// Throws std::invalid_argument "<output> (<path>) is also <input or output> (<path>); ..." when
// an output names the same file (same_file) as an input or as another output: writing it would
// destroy what the command reads, or one output would replace the other. Empty paths are
// skipped. For checking a command's files before it reads or writes any.
void check_outputs_distinct(std::span<const NamedPath> inputs, std::span<const NamedPath> outputs);

// A file descriptor open for reading on `path`, which must be a regular file (or a link to one).
// Every file dropkit reads is opened here: the open does not wait (O_NONBLOCK), so a named pipe,
// a device or a directory is refused at once instead of blocking until a writer appears.
// Throws std::runtime_error("cannot read <path>: <reason>"), the reason "it is not a regular
// file (...)" for those. The caller closes the descriptor.
int open_regular_file(const std::filesystem::path& path);

// The whole content of a regular file (open_regular_file); throws std::runtime_error("cannot read
// <path>: <reason>").
std::string read_file(const std::filesystem::path& path);

// Creates `dir` and its missing parents, then proves it writable by creating and removing a probe
// file, so a long run fails at start-up rather than when it first saves. Throws
// std::runtime_error("output directory <dir> is not writable: <reason>"), also when `dir` exists
// but is not a directory. An empty path means the current directory.
void ensure_writable_dir(const std::filesystem::path& dir);

// An exclusive advisory lock (flock) on a directory, held while the object lives: two processes
// that both lock a run directory cannot write it at once. The lock is on the directory itself,
// so it leaves no file behind, and the kernel drops it when the process dies (kill -9
// included). Throws std::runtime_error naming the directory when another process holds it.
class DirectoryLock {
 public:
  explicit DirectoryLock(const std::filesystem::path& dir);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;
  // Moving hands the lock over (train::RunDir takes the lock a resume took before reading).
  DirectoryLock(DirectoryLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  DirectoryLock& operator=(DirectoryLock&&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace dropkit
