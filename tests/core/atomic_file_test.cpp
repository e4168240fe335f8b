#include "dropkit/core/atomic_file.h"

#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/temp_dir.h"

namespace dropkit {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;

class AtomicFileTest : public testing::Test {
 protected:
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      names.push_back(entry.path().filename().string());
    }
    return names;
  }

  // A regular file, so that any path below it cannot be created, even by root (for whom chmod
  // would not make a directory unwritable).
  fs::path regular_file() {
    const fs::path file = dir_ / "file";
    std::ofstream(file) << "i am a file";
    return file;
  }

  test::TempDir tmp_{"dropkit_atomic_file_test"};
  const fs::path dir_ = tmp_.path();
};

// Returns the runtime_error message, recording a failure if nothing (or something else) is thrown.
template <typename Action>
std::string error_of(Action action) {
  try {
    action();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a std::runtime_error";
  return "";
}

TEST_F(AtomicFileTest, RoundTripsTextAndBinary) {
  const fs::path path = dir_ / "a.bin";
  std::string bytes = "hello\n";
  bytes.push_back('\0');
  for (int i = 0; i < 300000; ++i) bytes.push_back(static_cast<char>(i * 31));
  write_file_atomic(path, bytes);
  EXPECT_EQ(read_file(path), bytes);
}

TEST_F(AtomicFileTest, RoundTripsEmptyFile) {
  const fs::path path = dir_ / "empty";
  write_file_atomic(path, "");
  EXPECT_TRUE(fs::is_regular_file(path));
  EXPECT_EQ(read_file(path), "");
}

TEST_F(AtomicFileTest, OverwriteReplacesContent) {
  const fs::path path = dir_ / "metrics.json";
  write_file_atomic(path, "a much longer first version of the file");
  write_file_atomic(path, "short");
  EXPECT_EQ(read_file(path), "short");
}

TEST_F(AtomicFileTest, LeavesNoTemporaryFilesBehind) {
  write_file_atomic(dir_ / "one.json", "1");
  write_file_atomic(dir_ / "one.json", "11");
  write_file_atomic(dir_ / "two.json", "2");
  EXPECT_THAT(entries(), testing::UnorderedElementsAre("one.json", "two.json"));
}

TEST_F(AtomicFileTest, WritesRelativeToCurrentDirectory) {
  const fs::path old_cwd = fs::current_path();
  fs::current_path(dir_);
  write_file_atomic("relative.txt", "here");
  fs::current_path(old_cwd);
  EXPECT_EQ(read_file(dir_ / "relative.txt"), "here");
  EXPECT_THAT(entries(), testing::ElementsAre("relative.txt"));
}

TEST_F(AtomicFileTest, UnwritableDirectoryThrowsNamingPathAndReason) {
  const fs::path path = regular_file() / "sub" / "y.json";
  const std::string message = error_of([&] { write_file_atomic(path, "x"); });
  EXPECT_THAT(message, HasSubstr("cannot write " + path.string() + ": "));
  EXPECT_THAT(message, HasSubstr("Not a directory"));
}

TEST_F(AtomicFileTest, FailedWriteKeepsOldFileAndLeavesNoTemporary) {
  // Renaming a file over a non-empty directory fails after the temporary file has been written,
  // which exercises the clean-up path.
  const fs::path path = dir_ / "target";
  fs::create_directories(path / "child");
  const std::string message = error_of([&] { write_file_atomic(path, "new"); });
  EXPECT_THAT(message, HasSubstr("cannot write " + path.string() + ": "));
  EXPECT_TRUE(fs::is_directory(path / "child"));
  EXPECT_THAT(entries(), testing::ElementsAre("target"));

  const fs::path file = regular_file();
  EXPECT_THROW(write_file_atomic(file / "x", "new"), std::runtime_error);
  EXPECT_EQ(read_file(file), "i am a file");
}

TEST_F(AtomicFileTest, DirectoryPathIsRejected) {
  const fs::path path = dir_ / "";
  EXPECT_THAT(error_of([&] { write_file_atomic(path, "x"); }), HasSubstr("cannot write"));
}

// Only regular files are replaced: a named pipe, a directory or a device stays what it was.
TEST_F(AtomicFileTest, ANonRegularFileIsNeverReplaced) {
  const fs::path fifo = dir_ / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const fs::path sub = dir_ / "sub";
  fs::create_directory(sub);
  for (const fs::path& p : {fifo, sub}) {
    EXPECT_THAT(error_of([&] { write_file_atomic(p, "x"); }), HasSubstr("not a regular file"));
  }
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_TRUE(fs::is_directory(sub));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 2);
  // /dev/null (a root user could otherwise rename over it): refused before any temporary exists.
  EXPECT_THAT(error_of([] { write_file_atomic("/dev/null", "x"); }),
              HasSubstr("not a regular file"));
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  // A symbolic link to a regular file is written through the rename as before.
  const fs::path target = regular_file(), link = dir_ / "link";
  fs::create_symlink(target, link);
  write_file_atomic(link, "new");
  EXPECT_EQ(read_file(link), "new");
}

// One holder at a time: a second lock on the same directory fails naming it (also from another
// descriptor of this process, as it would from another process); released on destruction.
TEST_F(AtomicFileTest, DirectoryLockIsExclusiveAndReleased) {
  {
    DirectoryLock first(dir_);
    EXPECT_THAT(error_of([&] { DirectoryLock second(dir_); }), HasSubstr("in use"));
    EXPECT_THAT(error_of([&] { DirectoryLock second(dir_); }), HasSubstr(dir_.string()));
  }
  EXPECT_NO_THROW(DirectoryLock again(dir_));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 0)
      << "the lock leaves no file";
  EXPECT_THAT(error_of([&] { DirectoryLock none(dir_ / "missing"); }), HasSubstr("cannot lock"));
}

TEST_F(AtomicFileTest, ReadOfMissingFileNamesThePath) {
  const fs::path path = dir_ / "missing.json";
  EXPECT_EQ(error_of([&] { read_file(path); }),
            "cannot read " + path.string() + ": No such file or directory");
}

TEST_F(AtomicFileTest, ReadOfDirectoryThrows) {
  EXPECT_THAT(error_of([&] { read_file(dir_); }), HasSubstr("cannot read " + dir_.string()));
}

TEST_F(AtomicFileTest, EnsureWritableDirCreatesNestedDirectories) {
  const fs::path nested = dir_ / "a" / "b" / "c";
  ensure_writable_dir(nested);
  EXPECT_TRUE(fs::is_directory(nested));
  EXPECT_TRUE(fs::is_empty(nested)) << "the probe file must be removed";
  ensure_writable_dir(nested);  // an existing directory is fine
  write_file_atomic(nested / "ok", "ok");
  EXPECT_EQ(read_file(nested / "ok"), "ok");
}

TEST_F(AtomicFileTest, EnsureWritableDirRejectsRegularFile) {
  const fs::path file = regular_file();
  EXPECT_EQ(
      error_of([&] { ensure_writable_dir(file); }),
      "output directory " + file.string() + " is not writable: it exists and is not a directory");
  EXPECT_EQ(read_file(file), "i am a file");
}

TEST_F(AtomicFileTest, EnsureWritableDirRejectsPathBelowRegularFile) {
  const fs::path below = regular_file() / "sub";
  EXPECT_THAT(error_of([&] { ensure_writable_dir(below); }),
              HasSubstr("output directory " + below.string() + " is not writable: "));
}

}  // namespace
}  // namespace dropkit
