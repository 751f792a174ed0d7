//===- OutputFile.cpp - writing a file the user named, safely -------------===//

#include "xfmr/runtime/OutputFile.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

using namespace xfmr::runtime;

namespace {

std::string cannotWrite(const std::string &path, const std::string &why) {
  return "cannot write '" + path + "': " + why;
}

std::string directoryOf(const std::string &path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  if (slash == 0)
    return "/";
  return path.substr(0, slash);
}

/// What kind of file a path names, for messages.
const char *kindName(mode_t mode) {
  if (S_ISDIR(mode))
    return "a directory";
  if (S_ISSOCK(mode))
    return "a socket";
  if (S_ISBLK(mode))
    return "a block device";
  if (S_ISLNK(mode))
    return "a symbolic link";
  return "not a regular file";
}

bool isStream(mode_t mode) { return S_ISCHR(mode) || S_ISFIFO(mode); }

/// How OutputFile writes a path, or why it cannot.
struct Plan {
  std::string error;
  /// Written in place (a device or FIFO); otherwise through a temporary.
  bool inPlace = false;
  /// The permission bits of the regular file being replaced, if any.
  bool replacing = false;
  mode_t mode = 0;
};

/// Decides how `path` is written. Reads only metadata.
Plan planFor(const std::string &path) {
  Plan plan;
  auto fail = [&](const std::string &why) {
    plan.error = cannotWrite(path, why);
    return plan;
  };
  if (path.empty()) {
    plan.error = "no output file given (an empty path)";
    return plan;
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) {
      struct stat target;
      if (::stat(path.c_str(), &target) != 0)
        return fail("it is a symbolic link to nothing; xfmr does not write "
                   "through links: remove it or name a file");
      if (!isStream(target.st_mode))
        return fail("it is a symbolic link; xfmr does not replace links or "
                   "write through them to another file: name the file "
                   "itself");
      st = target;
    }
    if (isStream(st.st_mode)) {
      if (::access(path.c_str(), W_OK) != 0)
        return fail(std::strerror(errno));
      plan.inPlace = true;
      return plan;
    }
    if (!S_ISREG(st.st_mode))
      return fail(std::string("it is ") + kindName(st.st_mode));
    plan.replacing = true;
    plan.mode = st.st_mode & 07777;
  } else if (errno != ENOENT && errno != ENOTDIR) {
    return fail(std::strerror(errno));
  }
  std::string dir = directoryOf(path);
  struct stat dirStat;
  if (::stat(dir.c_str(), &dirStat) != 0)
    return fail(errno == ENOENT ? "the directory '" + dir + "' does not exist"
                               : "the directory '" + dir +
                                     "': " + std::strerror(errno));
  if (!S_ISDIR(dirStat.st_mode))
    return fail("'" + dir + "' is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return fail("the directory '" + dir + "' is not writable (" +
                   std::strerror(errno) + ")");
  return plan;
}

std::string randomSuffix() {
  static std::atomic<uint64_t> counter{0};
  uint64_t bits = static_cast<uint64_t>(::getpid()) * 0x9E3779B97F4A7C15ull +
                  counter.fetch_add(1) * 0xBF58476D1CE4E5B9ull;
  try {
    std::random_device device;
    bits ^= (static_cast<uint64_t>(device()) << 32) ^ device();
  } catch (...) {
    // The pid and counter still make the name unique within this host's
    // processes; O_EXCL handles collisions with anything else.
  }
  static const char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string suffix;
  for (int i = 0; i < 8; ++i) {
    suffix += kAlphabet[bits % 36];
    bits /= 36;
  }
  return suffix;
}

//===----------------------------------------------------------------------===//
// Removal on signals
//===----------------------------------------------------------------------===//

constexpr int kSlots = 64;
/// Paths (malloc'ed) of temporary files to remove if a signal ends the
/// process. The handler only exchanges and unlinks: async-signal-safe.
std::atomic<char *> pending[kSlots];

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
struct sigaction previousAction[NSIG];
std::atomic<bool> installed[NSIG];

extern "C" void removeOutputsAndChain(int signum, siginfo_t *info,
                                      void *context) {
  int savedErrno = errno;
  for (std::atomic<char *> &slot : pending)
    if (char *path = slot.exchange(nullptr))
      ::unlink(path);
  const struct sigaction &previous = previousAction[signum];
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction)
      previous.sa_sigaction(signum, info, context);
  } else if (previous.sa_handler == SIG_DFL) {
    // Blocked while this handler runs: delivered, with its default effect,
    // when it returns.
    ::signal(signum, SIG_DFL);
    ::raise(signum);
  } else if (previous.sa_handler != SIG_IGN) {
    previous.sa_handler(signum);
    // A one-shot handler (SA_RESETHAND: LLVM's, in the compiler tools)
    // expects the default action next. Its re-raise can come back to this
    // handler when LLVM registered after it, and the process would then run
    // on without its files: take the default action here. A handler that
    // stays installed (Python's, a host's) keeps control.
    if (previous.sa_flags & SA_RESETHAND) {
      ::signal(signum, SIG_DFL);
      ::raise(signum);
    }
  }
  errno = savedErrno;
}

} // namespace

void xfmr::runtime::removeOnSignal(const std::string &path) {
  char *copy = ::strdup(path.c_str());
  if (!copy)
    return;
  for (std::atomic<char *> &slot : pending) {
    char *expected = nullptr;
    if (slot.compare_exchange_strong(expected, copy))
      return;
  }
  std::free(copy); // Full: the file is still removed on errors, not signals.
}

void xfmr::runtime::keepOnSignal(const std::string &path) {
  for (std::atomic<char *> &slot : pending) {
    char *current = slot.load();
    if (current && path == current &&
        slot.compare_exchange_strong(current, nullptr)) {
      std::free(current);
      return;
    }
  }
}

void xfmr::runtime::removeOutputsOnSignals(bool onlyDefault) {
  for (int signum : kSignals) {
    if (installed[signum].exchange(true))
      continue;
    struct sigaction current;
    if (::sigaction(signum, nullptr, &current) != 0) {
      installed[signum] = false;
      continue;
    }
    bool isDefault =
        !(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_DFL;
    bool isIgnored =
        !(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_IGN;
    if (isIgnored || (onlyDefault && !isDefault)) {
      installed[signum] = false;
      continue;
    }
    previousAction[signum] = current;
    struct sigaction mine = {};
    mine.sa_sigaction = removeOutputsAndChain;
    mine.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&mine.sa_mask);
    if (::sigaction(signum, &mine, nullptr) != 0)
      installed[signum] = false;
  }
}

//===----------------------------------------------------------------------===//
// OutputFile
//===----------------------------------------------------------------------===//

std::string xfmr::runtime::checkOutputPath(const std::string &path) {
  return planFor(path).error;
}

std::string OutputFile::open(const std::string &path) {
  discard();
  path_ = path;
  Plan plan = planFor(path);
  if (!plan.error.empty())
    return plan.error;
  if (plan.inPlace) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd_ < 0)
      return cannotWrite(path, std::strerror(errno));
    struct stat st;
    if (::fstat(fd_, &st) != 0 || !isStream(st.st_mode)) {
      discard();
      return cannotWrite(path, "it changed while being opened (no longer a "
                               "device or FIFO)");
    }
    return "";
  }
  // O_EXCL never follows a symlink planted at the name and never reuses a
  // file someone else created; a collision just draws another name.
  mode_t mode = plan.replacing ? plan.mode : 0666;
  // The name is registered for removal before the file exists: a signal
  // right after the creation must not leave it behind.
  for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
    std::string candidate = path + ".tmp-" + randomSuffix();
    removeOnSignal(candidate);
    fd_ = ::open(candidate.c_str(),
                 O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd_ >= 0) {
      temporary_ = candidate;
      continue;
    }
    int error = errno;
    keepOnSignal(candidate);
    if (error != EEXIST)
      return cannotWrite(path, "cannot create the temporary file '" +
                                   candidate + "': " + std::strerror(error));
  }
  if (fd_ < 0)
    return cannotWrite(path, "no unused temporary file name found");
  // The umask applied to `mode` at creation; a replaced file keeps its bits.
  if (plan.replacing)
    (void)::fchmod(fd_, plan.mode);
  return "";
}

OutputFile::~OutputFile() { discard(); }

void OutputFile::discard() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
  if (!temporary_.empty()) {
    ::unlink(temporary_.c_str());
    keepOnSignal(temporary_);
    temporary_.clear();
  }
}

std::string OutputFile::write(const void *data, size_t size) {
  if (fd_ < 0)
    return cannotWrite(path_, "the file is not open");
  const char *bytes = static_cast<const char *>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, bytes, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int error = n < 0 ? errno : EIO;
      discard();
      return cannotWrite(path_, std::strerror(error));
    }
    bytes += n;
    size -= static_cast<size_t>(n);
  }
  return "";
}

std::string OutputFile::commit() {
  if (fd_ < 0)
    return cannotWrite(path_, "the file is not open");
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    int error = errno;
    discard();
    return cannotWrite(path_, std::strerror(error));
  }
  if (temporary_.empty())
    return "";
  if (::rename(temporary_.c_str(), path_.c_str()) != 0) {
    int error = errno;
    discard();
    return cannotWrite(path_, std::strerror(error));
  }
  keepOnSignal(temporary_);
  temporary_.clear();
  return "";
}

std::string xfmr::runtime::writeOutputFile(const std::string &path,
                                           const void *data, size_t size) {
  OutputFile file;
  std::string error = file.open(path);
  if (error.empty())
    error = file.write(data, size);
  if (error.empty())
    error = file.commit();
  return error;
}
