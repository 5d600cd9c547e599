// Writes an emitted artifact into OUTDIR and builds its library (g++ for cpu, nvcc for cuda).
// All or nothing: files are produced in a temporary directory and renamed into place.
#include "codegen/Artifact.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

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
  return "unsupported";
}

StringRef mlir::mix::codegen::cTypeName(Type element) {
  if (element.isF32())
    return "float";
  if (element.isBF16() || element.isF16())
    return "uint16_t";
  if (element.isInteger(32))
    return "int32_t";
  if (isa<Float8E4M3FNType>(element))
    return "uint8_t";
  return "void";
}

int64_t mlir::mix::codegen::dtypeBytes(Type element) {
  if (element.isBF16() || element.isF16())
    return 2;
  if (isa<Float8E4M3FNType>(element))
    return 1;
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
  SmallVector<StringRef> args;
  if (cuda)
    args = {*program, "-O3", "-std=c++17", "-shared", "-Xcompiler", "-fPIC",
            "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
            "-cudart", "static", include, "-o", library, source};
  else {
    args = {*program, "-std=c++17", "-O3", march};
    for (const std::string &flag : artifact.isaFlags)
      args.push_back(flag);
    args.append({"-fopenmp", "-fPIC", "-shared", "-w", include, source, "-o", library});
  }
  // $MIXTILE_CXXFLAGS: extra flags for the cpu library's compiler, after the others (the
  // sanitizer builds of the test suite: scripts/test.sh --sanitize, the threads test).
  std::vector<std::string> extraFlags;
  if (std::optional<std::string> flags = llvm::sys::Process::GetEnv("MIXTILE_CXXFLAGS")) {
    SmallVector<StringRef> pieces;
    StringRef(*flags).split(pieces, ' ', -1, /*KeepEmpty=*/false);
    for (StringRef piece : pieces)
      extraFlags.push_back(piece.str());
  }
  if (!cuda) // nvcc takes host flags through -Xcompiler; the sanitizer builds are CPU-only
    for (const std::string &flag : extraFlags)
      args.push_back(flag);
  std::optional<StringRef> redirects[] = {std::nullopt, StringRef(log), StringRef(log)};
  std::string message;
  int status = llvm::sys::ExecuteAndWait(*program, args, std::nullopt, redirects, 0, 0, &message);
  if (status != 0) {
    auto buffer = llvm::MemoryBuffer::getFile(log);
    error = std::string(cuda ? "nvcc" : "the C++ compiler") + " failed to build lib" +
            artifact.name + ".so" +
            (message.empty() ? "" : ": " + message) +
            (buffer ? "\n" + (*buffer)->getBuffer().take_front(4000).str() : "");
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
