// Writes an emitted artifact into OUTDIR and builds its library (g++ for cpu, nvcc for cuda).
// All or nothing: files are produced in a temporary directory and renamed into place.
#include "codegen/Artifact.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <fcntl.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace mlir;
using namespace mlir::mix::codegen;

std::string mlir::mix::codegen::cIdentifier(StringRef text) {
  std::string id;
  for (char c : text)
    id += llvm::isAlnum(c) ? c : '_';
  if (id.empty() || llvm::isDigit(id[0]))
    id = "_" + id;
  return id;
}

StringRef mlir::mix::codegen::dtypeName(Type element) {
  if (element.isF32())
    return "f32";
  if (element.isBF16())
    return "bf16";
  if (element.isF16())
    return "f16";
  if (element.isInteger(32))
    return "i32";
  if (isa<Float8E4M3FNType>(element))
    return "f8_e4m3";
  if (isa<Float4E2M1FNType>(element)) // two codes a byte, the even element in the low nibble
    return "f4_e2m1";
  if (isa<Float8E8M0FNUType>(element))
    return "f8_e8m0";
  return "unsupported";
}

StringRef mlir::mix::codegen::cTypeName(Type element) {
  if (element.isF32())
    return "float";
  if (element.isBF16() || element.isF16())
    return "uint16_t";
  if (element.isInteger(32))
    return "int32_t";
  if (isa<Float8E4M3FNType, Float4E2M1FNType, Float8E8M0FNUType>(element))
    return "uint8_t";
  return "void";
}

double mlir::mix::codegen::dtypeBytes(Type element) {
  if (element.isBF16() || element.isF16())
    return 2;
  if (isa<Float8E4M3FNType, Float8E8M0FNUType>(element))
    return 1;
  if (isa<Float4E2M1FNType>(element))
    return 0.5;
  return 4;
}

namespace {

LogicalResult writeFile(const std::string &path, StringRef text, std::string &error) {
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec);
  if (ec) {
    error = "cannot write '" + path + "': " + ec.message();
    return failure();
  }
  os << text;
  os.close();
  if (os.has_error()) {
    error = "cannot write '" + path + "': " + os.error().message();
    return failure();
  }
  return success();
}

/// The nvcc that builds CUDA artifacts: $MIXTILE_NVCC, else nvcc on PATH, else the
/// toolkit's default location.
std::optional<std::string> findNvcc() {
  if (std::optional<std::string> chosen = llvm::sys::Process::GetEnv("MIXTILE_NVCC"))
    return *chosen;
  if (llvm::ErrorOr<std::string> onPath = llvm::sys::findProgramByName("nvcc"))
    return *onPath;
  if (llvm::sys::fs::can_execute("/usr/local/cuda/bin/nvcc"))
    return std::string("/usr/local/cuda/bin/nvcc");
  return std::nullopt;
}

/// What a failed compiler or linker run left to say: the process error, then the start of its log.
std::string failureDetail(StringRef message, StringRef logPath) {
  auto buffer = llvm::MemoryBuffer::getFile(logPath);
  return (message.empty() ? "" : ": " + message.str()) +
         (buffer ? "\n" + (*buffer)->getBuffer().take_front(4000).str() : "");
}

/// Where compiled kernel instantiations are kept between builds: $MIXTILE_CACHE_DIR, else
/// $XDG_CACHE_HOME/mixtile/kernels, else ~/.cache/mixtile/kernels; "off" (or a directory that
/// cannot be made) builds without one.
std::optional<std::string> kernelCacheDir() {
  std::string dir;
  if (std::optional<std::string> chosen = llvm::sys::Process::GetEnv("MIXTILE_CACHE_DIR")) {
    if (chosen->empty() || *chosen == "off")
      return std::nullopt;
    dir = *chosen;
  } else if (std::optional<std::string> xdg = llvm::sys::Process::GetEnv("XDG_CACHE_HOME");
             xdg && !xdg->empty()) {
    dir = *xdg + "/mixtile/kernels";
  } else if (std::optional<std::string> home = llvm::sys::Process::GetEnv("HOME");
             home && !home->empty()) {
    dir = *home + "/.cache/mixtile/kernels";
  } else {
    return std::nullopt;
  }
  if (llvm::sys::fs::create_directories(dir) || !llvm::sys::fs::is_directory(dir))
    return std::nullopt;
  return dir;
}

/// Keeps the kernel cache under $MIXTILE_CACHE_MAX_MB megabytes (default 1024): removes the
/// least recently used entries first (a build that takes an entry refreshes its time) and
/// temporaries a crashed build left more than an hour ago. Entries another build is about to
/// link may go too: that build's link fails and rebuilds them (buildCpuInParts).
void trimKernelCache(StringRef dir) {
  namespace fs = llvm::sys::fs;
  uint64_t limit = uint64_t(1024) << 20;
  if (std::optional<std::string> chosen = llvm::sys::Process::GetEnv("MIXTILE_CACHE_MAX_MB")) {
    uint64_t megabytes = 0;
    if (!StringRef(*chosen).getAsInteger(10, megabytes) && megabytes < (uint64_t(1) << 40))
      limit = megabytes << 20;
  }
  struct Entry {
    std::string path;
    uint64_t size;
    llvm::sys::TimePoint<> time;
  };
  std::vector<Entry> entries;
  uint64_t total = 0;
  const auto now = std::chrono::system_clock::now();
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; it != end && !ec; it.increment(ec)) {
    fs::file_status status;
    if (fs::status(it->path(), status) || status.type() != fs::file_type::regular_file)
      continue;
    StringRef name = llvm::sys::path::filename(it->path());
    if (name.contains(".o.tmp-")) {
      if (now - status.getLastModificationTime() > std::chrono::hours(1))
        fs::remove(it->path());
      continue;
    }
    if (!name.ends_with(".o"))
      continue;
    entries.push_back({it->path(), status.getSize(), status.getLastModificationTime()});
    total += status.getSize();
  }
  if (total <= limit)
    return;
  std::sort(entries.begin(), entries.end(),
            [](const Entry &a, const Entry &b) { return a.time < b.time; });
  for (const Entry &entry : entries) {
    if (total <= limit)
      break;
    if (!fs::remove(entry.path))
      total -= entry.size;
  }
}

/// What a cached object depends on besides its own source: the compiler (its version text,
/// and the size and time of the binary the name resolves to), the flags, and the kernel
/// library's headers as the artifact carries them.
void hashBuildInputs(llvm::SHA256 &hash, StringRef program, ArrayRef<std::string> flags,
                     StringRef includeFlag, const EmittedArtifact &artifact,
                     StringRef scratchDir) {
  auto field = [&](StringRef text) {
    hash.update(text);
    hash.update(StringRef("\0", 1));
  };
  field(program);
  SmallString<256> real;
  llvm::sys::fs::file_status status;
  if (!llvm::sys::fs::real_path(program, real) && !llvm::sys::fs::status(real, status)) {
    field(real);
    field(std::to_string(status.getSize()));
    field(std::to_string(status.getLastModificationTime().time_since_epoch().count()));
  }
  std::string versionFile = (scratchDir + "/compiler-version").str();
  std::optional<StringRef> redirects[] = {std::nullopt, StringRef(versionFile),
                                          StringRef(versionFile)};
  StringRef versionArgs[] = {program, "--version"};
  if (llvm::sys::ExecuteAndWait(program, versionArgs, std::nullopt, redirects) == 0)
    if (auto buffer = llvm::MemoryBuffer::getFile(versionFile))
      field((*buffer)->getBuffer());
  for (size_t i = 0; i < flags.size(); ++i) {
    if (flags[i] == includeFlag)  // the artifact's temporary directory: its headers count below
      continue;
    field(flags[i]);
    // A header forced in through $MIXTILE_CXXFLAGS (-include FILE) counts by its contents.
    if (flags[i] == "-include" && i + 1 < flags.size())
      if (auto buffer = llvm::MemoryBuffer::getFile(flags[i + 1]))
        field((*buffer)->getBuffer());
  }
  for (const auto &[path, text] : artifact.supportFiles) {
    field(path);
    field(text);
  }
}

/// One compiler run of a split build: its command, and where its object goes once built.
struct CompileJob {
  std::string source, object, log;
  std::string cacheEntry;  // the cache file to fill from `object`, or ""
  bool separateKernels = false;  // the artifact's own source: its kernels are compiled apart
  llvm::sys::ProcessInfo process;
};

/// Builds a cpu library whose heavy kernel instantiations are declared extern in the source
/// (EmittedArtifact::separateKernels): each instantiation is compiled in a translation unit of
/// its own, or taken from the kernel cache when an identical build made it before; the source
/// is compiled with MIXTILE_SEPARATE_KERNELS; up to $MIXTILE_JOBS (default: the hardware
/// threads, at most 8) compilers run at once; then everything is linked into lib<name>.so.
/// A link that fails over cached objects is retried once with all of them rebuilt.
LogicalResult buildCpuInParts(const EmittedArtifact &artifact, StringRef dir, StringRef program,
                              ArrayRef<std::string> flags, std::string &error) {
  namespace fs = llvm::sys::fs;
  std::string work = (dir + "/.build").str();
  if (std::error_code ec = fs::create_directories(work)) {
    error = "cannot create '" + work + "': " + ec.message();
    return failure();
  }
  std::optional<std::string> cache = kernelCacheDir();
  auto finish = [&](LogicalResult result) {
    fs::remove_directories(work);
    if (cache)  // once linked: this build's entries are the newest, the last to go
      trimKernelCache(*cache);
    return result;
  };
  llvm::SHA256 common;
  if (cache)
    hashBuildInputs(common, program, flags, "-I" + dir.str(), artifact, work);
  const std::array<uint8_t, 32> commonHash = common.result();

  std::vector<std::string> objects;
  std::vector<CompileJob> jobs;
  std::vector<size_t> cachedKernels;  // indices into separateKernels taken from the cache
  auto kernelJob = [&](size_t i, bool useCache) -> LogicalResult {
    const std::string &kernel = artifact.separateKernels[i];
    // Nothing of the artifact's own (its name, its directory) in the text: the object is the
    // same for every artifact that calls the kernel, and so is its cache entry.
    std::string text = "// One kernel instantiation, compiled on its own by mixtilec.\n#include "
                       "\"mixtile_kernels/kernels.h\"\n\ntemplate decltype(" +
                       kernel + ") " + kernel + ";\n";
    CompileJob job;
    job.source = work + "/kernel" + std::to_string(i) + ".cpp";
    job.object = work + "/kernel" + std::to_string(i) + ".o";
    job.log = work + "/kernel" + std::to_string(i) + ".log";
    if (cache) {
      llvm::SHA256 hash;
      hash.update(commonHash);
      hash.update(text);
      job.cacheEntry = *cache + "/" + llvm::toHex(hash.result(), /*LowerCase=*/true) + ".o";
      uint64_t size = 0;
      if (useCache && !fs::file_size(job.cacheEntry, size) && size > 0) {
        ::utimensat(AT_FDCWD, job.cacheEntry.c_str(), nullptr, 0);  // used now (trimKernelCache)
        objects[i] = job.cacheEntry;
        cachedKernels.push_back(i);
        return success();
      }
    }
    if (failed(writeFile(job.source, text, error)))
      return failure();
    objects[i] = job.object;
    jobs.push_back(std::move(job));
    return success();
  };

  auto run = [&](std::vector<CompileJob> &batch) -> LogicalResult {
    unsigned width = std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
    if (std::optional<std::string> chosen = llvm::sys::Process::GetEnv("MIXTILE_JOBS")) {
      unsigned n = 0;
      if (!StringRef(*chosen).getAsInteger(10, n) && n > 0)
        width = std::min(n, 64u);
    }
    std::deque<CompileJob *> running;
    std::string failedLog;
    bool ok = true;
    auto waitOldest = [&] {
      CompileJob *job = running.front();
      running.pop_front();
      std::string message;
      llvm::sys::ProcessInfo done =
          llvm::sys::Wait(job->process, std::nullopt, &message);
      if (done.ReturnCode != 0) {
        if (ok)
          failedLog = failureDetail(message, job->log);
        ok = false;
        return;
      }
      if (!job->cacheEntry.empty()) {
        // Filled atomically: a temporary beside the entry, renamed over it.
        std::string temporary = job->cacheEntry + ".tmp-" + std::to_string(::getpid());
        if (fs::copy_file(job->object, temporary) || fs::rename(temporary, job->cacheEntry))
          fs::remove(temporary);  // a full disk or a read-only cache: built without keeping it
      }
    };
    for (CompileJob &job : batch) {
      if (running.size() >= width)
        waitOldest();
      if (!ok)
        break;
      std::optional<StringRef> redirects[] = {std::nullopt, StringRef(job.log),
                                              StringRef(job.log)};
      SmallVector<StringRef> args = {program};
      for (const std::string &flag : flags)
        args.push_back(flag);
      if (job.separateKernels)
        args.push_back("-DMIXTILE_SEPARATE_KERNELS");
      args.append({"-c", job.source, "-o", job.object});
      std::string message;
      bool failedToStart = false;
      job.process = llvm::sys::ExecuteNoWait(program, args, std::nullopt, redirects, 0, &message,
                                             &failedToStart);
      if (failedToStart) {
        failedLog = ": " + message;
        ok = false;
        break;
      }
      running.push_back(&job);
    }
    while (!running.empty())
      waitOldest();
    if (!ok) {
      error = "the C++ compiler failed to build lib" + artifact.name + ".so" + failedLog;
      return failure();
    }
    return success();
  };

  objects.assign(artifact.separateKernels.size(), "");
  for (size_t i = 0; i < artifact.separateKernels.size(); ++i)
    if (failed(kernelJob(i, /*useCache=*/true)))
      return finish(failure());
  CompileJob glue;
  glue.source = (dir + "/" + artifact.sourceFile).str();
  glue.object = work + "/source.o";
  glue.log = work + "/source.log";
  glue.separateKernels = true;
  jobs.insert(jobs.begin(), std::move(glue));
  if (failed(run(jobs)))
    return finish(failure());
  objects.push_back(work + "/source.o");

  std::string library = (dir + "/lib" + artifact.name + ".so").str();
  std::string linkLog = work + "/link.log";
  auto link = [&](std::string &failedLog) {
    SmallVector<StringRef> args = {program};
    for (const std::string &flag : flags)  // as the one-command build had them: link flags too
      args.push_back(flag);
    args.push_back("-shared");
    for (const std::string &object : objects)
      args.push_back(object);
    args.append({"-o", library});
    std::optional<StringRef> redirects[] = {std::nullopt, StringRef(linkLog), StringRef(linkLog)};
    std::string message;
    if (llvm::sys::ExecuteAndWait(program, args, std::nullopt, redirects, 0, 0, &message) == 0)
      return true;
    failedLog = failureDetail(message, linkLog);
    return false;
  };
  std::string failedLog;
  if (link(failedLog))
    return finish(success());
  if (!cachedKernels.empty()) {
    // A cached object the linker refused (damaged, or from another toolchain): rebuild them.
    std::vector<size_t> again = cachedKernels;
    cachedKernels.clear();
    jobs.clear();
    for (size_t i : again)
      if (failed(kernelJob(i, /*useCache=*/false)))
        return finish(failure());
    if (failed(run(jobs)))
      return finish(failure());
    if (link(failedLog))
      return finish(success());
  }
  error = "the C++ compiler failed to link lib" + artifact.name + ".so" + failedLog;
  return finish(failure());
}

/// Compiles the generated source into lib<name>.so: with the system C++ compiler (or
/// $MIXTILE_CXX) for the host it runs on, or with nvcc for sm_80 and sm_90 (target cuda).
LogicalResult buildLibrary(const EmittedArtifact &artifact, StringRef dir, std::string &error) {
  const bool cuda = artifact.target == "cuda";
  std::string compiler = "g++";
  if (std::optional<std::string> chosen = llvm::sys::Process::GetEnv("MIXTILE_CXX"))
    compiler = *chosen;
  llvm::ErrorOr<std::string> program = std::make_error_code(std::errc::no_such_file_or_directory);
  if (cuda) {
    std::optional<std::string> nvcc = findNvcc();
    if (!nvcc) {
      error = "cannot find nvcc (the CUDA toolkit) to build the cuda library: install it, put "
              "it on PATH or set MIXTILE_NVCC; --emit source needs no compiler";
      return failure();
    }
    compiler = *nvcc;
    program = llvm::sys::findProgramByName(compiler);
    if (program && !llvm::sys::fs::can_execute(*program))
      program = std::make_error_code(std::errc::no_such_file_or_directory);
  } else {
    program = llvm::sys::findProgramByName(compiler);
  }
  if (!program) {
    error = "cannot find the " + std::string(cuda ? "CUDA" : "C++") + " compiler '" + compiler +
            "' to build the library";
    return failure();
  }
  std::string source = (dir + "/" + artifact.sourceFile).str();
  std::string library = (dir + "/lib" + artifact.name + ".so").str();
  std::string log = (dir + "/build.log").str();
  std::string include = "-I" + dir.str();
  std::string march = "-march=" + artifact.march;
  // The cpu compiler's flags, for every unit of a split build and the one-command build alike;
  // $MIXTILE_CXXFLAGS last (the sanitizer builds of the test suite: scripts/test.sh --sanitize,
  // the threads test). nvcc takes host flags through -Xcompiler; the sanitizer builds are
  // CPU-only.
  SmallVector<std::string> cpuFlags;
  if (!cuda) {
    cpuFlags = {"-std=c++17", "-O3", march};
    for (const std::string &flag : artifact.isaFlags)
      cpuFlags.push_back(flag);
    cpuFlags.append({"-fopenmp", "-fPIC", "-w", include});
    if (std::optional<std::string> extra = llvm::sys::Process::GetEnv("MIXTILE_CXXFLAGS")) {
      SmallVector<StringRef> pieces;
      StringRef(*extra).split(pieces, ' ', -1, /*KeepEmpty=*/false);
      for (StringRef piece : pieces)
        cpuFlags.push_back(piece.str());
    }
    if (!artifact.separateKernels.empty())
      return buildCpuInParts(artifact, dir, *program, cpuFlags, error);
  }
  SmallVector<StringRef> args;
  if (cuda) {
    args = {*program, "-O3", "-std=c++17", "-shared", "-Xcompiler", "-fPIC",
            "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
            "-cudart", "static", include, "-o", library, source};
  } else {
    args.push_back(*program);
    for (const std::string &flag : cpuFlags)
      args.push_back(flag);
    args.append({"-shared", source, "-o", library});
  }
  std::optional<StringRef> redirects[] = {std::nullopt, StringRef(log), StringRef(log)};
  std::string message;
  int status = llvm::sys::ExecuteAndWait(*program, args, std::nullopt, redirects, 0, 0, &message);
  if (status != 0) {
    error = std::string(cuda ? "nvcc" : "the C++ compiler") + " failed to build lib" +
            artifact.name + ".so" + failureDetail(message, log);
    return failure();
  }
  llvm::sys::fs::remove(log);
  return success();
}

} // namespace

LogicalResult mlir::mix::codegen::writeArtifact(const EmittedArtifact &artifact, StringRef outdir,
                                                bool build, std::string &error,
                                                llvm::function_ref<bool()> interrupted) {
  namespace fs = llvm::sys::fs;
  if (fs::exists(outdir) && !fs::is_directory(outdir)) {
    error = "output '" + outdir.str() + "' exists and is not a directory";
    return failure();
  }
  SmallString<256> parent(outdir);
  llvm::sys::path::remove_filename(parent);
  if (!parent.empty() && !fs::is_directory(parent)) {
    error = "the parent directory of '" + outdir.str() + "' does not exist";
    return failure();
  }
  std::string temporary = outdir.str() + ".tmp-" + std::to_string(::getpid());
  fs::remove_directories(temporary);
  auto cleanup = [&] { fs::remove_directories(temporary); };
  if (std::error_code ec = fs::create_directories(temporary)) {
    error = "cannot create '" + temporary + "': " + ec.message();
    return failure();
  }
  std::string manifestText;
  llvm::raw_string_ostream os(manifestText);
  os << llvm::formatv("{0:2}", llvm::json::Value(llvm::json::Object(artifact.manifest))) << "\n";
  if ((!artifact.header.empty() &&
       failed(writeFile(temporary + "/" + artifact.name + ".h", artifact.header, error))) ||
      (!artifact.sourceFile.empty() &&
       failed(writeFile(temporary + "/" + artifact.sourceFile, artifact.source, error))) ||
      failed(writeFile(temporary + "/manifest.json", manifestText, error))) {
    cleanup();
    return failure();
  }
  for (const auto &[path, text] : artifact.supportFiles) {
    SmallString<256> dir(temporary + "/" + path);
    llvm::sys::path::remove_filename(dir);
    (void)fs::create_directories(dir);
    if (failed(writeFile(temporary + "/" + path, text, error))) {
      cleanup();
      return failure();
    }
  }
  bool builtLibrary = !build || succeeded(buildLibrary(artifact, temporary, error));
  if (interrupted && interrupted()) {
    error = "interrupted: nothing written";
    builtLibrary = false;
  }
  if (!builtLibrary) {
    cleanup();
    return failure();
  }
  // Swap the new artifact in; an old one is removed only once the new one is in place.
  std::string old = outdir.str() + ".old-" + std::to_string(::getpid());
  bool hadOld = fs::exists(outdir);
  if (hadOld)
    if (std::error_code ec = fs::rename(outdir, old)) {
      error = "cannot replace '" + outdir.str() + "': " + ec.message();
      cleanup();
      return failure();
    }
  if (std::error_code ec = fs::rename(temporary, outdir)) {
    error = "cannot create '" + outdir.str() + "': " + ec.message();
    if (hadOld)
      (void)fs::rename(old, outdir);
    cleanup();
    return failure();
  }
  if (hadOld)
    fs::remove_directories(old);
  return success();
}
