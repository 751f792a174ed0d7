//===- OutputFile.h - writing a file the user named, safely -----*- C++ -*-===//
//
// Every file xfmr writes for a user (artifacts, IR, .npy logits, copies of
// artifacts) goes through OutputFile, so that all writers share one policy:
//
// - Nothing at the path, or a regular file: the bytes go to a new temporary
//   file in the same directory, created exclusively under a unique name
//   (O_CREAT | O_EXCL | O_NOFOLLOW, never following a planted symlink), and
//   commit() renames it over the path. Readers see the old file or the whole
//   new one, never half a file; concurrent writers each rename a complete
//   file. A replaced file keeps its permission bits.
// - A character device or a FIFO, also behind a symlink (/dev/null,
//   /dev/stdout, a named pipe): written in place, since it is a stream, not
//   a file to replace.
// - Anything else (a directory, a socket, a block device, a symlink to a
//   regular file or to nothing): refused with a message naming the path.
//   xfmr never replaces a link or writes through it to a file the user did
//   not name.
//
// Until commit(), the temporary file is removed by the destructor (errors,
// exceptions) and, once removeOutputsOnSignals() was called, by SIGINT,
// SIGTERM, SIGHUP and SIGQUIT. Plain C++17 + POSIX, like the rest of the
// runtime, so the compiler and the runtime share it. Failures are returned
// as messages ("" on success) rather than thrown, because the compiler is
// built without exceptions.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_OUTPUTFILE_H
#define XFMR_RUNTIME_OUTPUTFILE_H

#include <cstddef>
#include <string>

namespace xfmr::runtime {

/// Checks, without writing anything, that `path` can be written by
/// OutputFile: its directory exists and is writable, and what is at the path
/// (if anything) is a regular file, a character device or a FIFO. Returns ""
/// or why not ("cannot write 'PATH': ..."). Run it before expensive work.
[[nodiscard]] std::string checkOutputPath(const std::string &path);

class OutputFile {
public:
  OutputFile() = default;
  /// Removes the temporary file unless commit() succeeded.
  ~OutputFile();
  OutputFile(const OutputFile &) = delete;
  OutputFile &operator=(const OutputFile &) = delete;

  /// Opens `path` for writing as described above; returns "" or the error.
  [[nodiscard]] std::string open(const std::string &path);
  /// Appends `size` bytes; returns "" or the error (the temporary file is
  /// then already removed).
  [[nodiscard]] std::string write(const void *data, size_t size);
  /// Closes the file and renames it over the path (a device or FIFO is just
  /// closed); returns "" or the error, leaving the old file untouched.
  [[nodiscard]] std::string commit();
  /// Removes the temporary file now (what the destructor does).
  void discard();

  const std::string &path() const { return path_; }
  /// The temporary file's name ("" when writing in place).
  const std::string &temporaryPath() const { return temporary_; }
  /// Whether the path is a stream written in place (no temporary file).
  bool inPlace() const { return temporary_.empty(); }

private:
  std::string path_, temporary_;
  int fd_ = -1;
};

/// Writes `size` bytes to `path` through an OutputFile (open, write,
/// commit); returns "" or the error.
[[nodiscard]] std::string writeOutputFile(const std::string &path,
                                          const void *data, size_t size);

/// Registers a temporary file to be removed if a signal ends the process
/// (see removeOutputsOnSignals), or forgets it. At most 64 at a time;
/// OutputFile does this itself, other temporary files (a linker's output)
/// may use it too.
void removeOnSignal(const std::string &path);
void keepOnSignal(const std::string &path);

/// Installs handlers for SIGINT, SIGTERM, SIGHUP and SIGQUIT that remove the
/// registered temporary files, then let the signal take its previous effect.
/// `onlyDefault`: install only over the default disposition (termination),
/// leaving signals that already have a handler alone; an embedding process
/// such as Python, whose SIGINT handler does not terminate, passes true.
/// Tools pass false so that the handlers chain to LLVM's crash handlers.
/// Idempotent per signal.
void removeOutputsOnSignals(bool onlyDefault);

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_OUTPUTFILE_H
