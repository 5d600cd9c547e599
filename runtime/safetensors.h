// Reading and writing safetensors files and sharded Hugging Face checkpoints.
// Owns the file format, its strict validation and the dtype vocabulary of the runtime; it
// maps files read-only and hands out views into them: it never copies tensor data on read.
// Internal C++ (errors are thrown as std::runtime_error); runtime.cpp turns them into codes.
#ifndef MIXTILE_RUNTIME_SAFETENSORS_H
#define MIXTILE_RUNTIME_SAFETENSORS_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mixtile::runtime {

/// A failure of the operating system (open, mmap, write, rename), as opposed to a malformed
/// file, which is reported as a plain std::runtime_error.
struct IoError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Every element type a safetensors file may hold. The runtime binds only the manifest's
/// dtypes (f32, bf16, f16, i32) but reads the rest, so a checkpoint that also holds, say,
/// I64 position ids still opens.
enum class DType : int {
  F32 = 0,
  BF16 = 1,
  F16 = 2,
  I32 = 3,
  F64 = 4,
  I64 = 5,
  I16 = 6,
  I8 = 7,
  U8 = 8,
  BOOL = 9,
  U16 = 10,
  U32 = 11,
  U64 = 12,
  F8_E4M3 = 13,
  F8_E5M2 = 14,
  F4_E2M1 = 15,  // "F4": two codes a byte, the even element in the low nibble
  F8_E8M0 = 16,  // MXFP4's power-of-two scales
};

/// The one home of the dtype tables: safetensors spelling ("BF16"), manifest spelling
/// ("bf16"), and the element size in bytes.
const char *safetensorsDTypeName(DType dtype);
const char *manifestDTypeName(DType dtype);
size_t dtypeBytes(DType dtype);
/// Parses a safetensors spelling; false when unknown.
bool parseSafetensorsDType(const std::string &text, DType &dtype);
/// Parses a manifest spelling (only f32, bf16, f16, i32, f8_e4m3, f4_e2m1, f8_e8m0); false
/// when unknown.
bool parseManifestDType(const std::string &text, DType &dtype);

/// "[4, 8]"
std::string formatShape(const std::vector<int64_t> &shape);

/// product(shape) * dtypeBytes(dtype) (half of it, rounded up, for F4_E2M1); throws on
/// overflow. `what` names the tensor.
size_t tensorByteSize(DType dtype, const std::vector<int64_t> &shape, const std::string &what);

/// A tensor inside a mapped file (or a caller's memory): the view never owns the bytes.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void *data = nullptr;
  size_t bytes = 0;
  std::string source; // the file it came from, for messages ("<memory>" for caller data)
  bool onDevice = false; // caller memory on the current CUDA device ("<device memory>")
  bool mapped = false;   // inside a read-only mapping of a file (never caller memory)
};

/// A read-only memory mapping of a whole file; unmapped when the last holder goes away.
/// The file stays open so a change made to it while mapped can be noticed: truncating or
/// rewriting a mapped file in place changes what the mapping reads (past the new end, a
/// read raises SIGBUS). Replacing the file by a rename does not touch the mapping.
class MappedFile {
public:
  static std::shared_ptr<MappedFile> open(const std::string &path);
  ~MappedFile();
  /// Throws IoError naming the file when its size or modification time is no longer the one
  /// it had when mapped (truncated, extended or written in place).
  void checkUnchanged() const;
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;

  const uint8_t *data() const { return static_cast<const uint8_t *>(base); }
  size_t size() const { return length; }
  const std::string &path() const { return filePath; }

private:
  MappedFile() = default;
  void *base = nullptr;
  size_t length = 0;
  int fd = -1;
  int64_t mtimeSeconds = 0, mtimeNanoseconds = 0;
  std::string filePath;
};

/// A set of named tensors: one file, a checkpoint directory, or tensors a caller added.
/// Views stay valid as long as the set lives (it holds the mappings).
class TensorSet {
public:
  /// Opens a .safetensors file, or a directory: with model.safetensors.index.json the
  /// index's weight_map decides which shard holds each tensor; without one, every
  /// *.safetensors file in it is bound and a name present in two files is an error.
  static std::unique_ptr<TensorSet> open(const std::string &path);
  /// An empty set, for tensors a library user provides from memory.
  static std::unique_ptr<TensorSet> empty(const std::string &description);

  /// Adds a tensor living in caller memory (borrowed, not copied). Throws on a duplicate
  /// name or a null pointer with a non-zero size.
  /// onDevice: the memory is the current CUDA device's (only cuda sessions read it).
  void addBorrowed(const std::string &name, DType dtype, const std::vector<int64_t> &shape,
                   const void *data, bool onDevice = false);

  const TensorView *find(const std::string &name) const;
  const std::map<std::string, TensorView> &tensors() const { return byName; }
  /// What the set was opened from, for messages ("weights.safetensors", "ckpt/").
  const std::string &description() const { return origin; }
  /// MappedFile::checkUnchanged on every file of the set.
  void checkUnchanged() const;

private:
  void addFile(const std::shared_ptr<MappedFile> &file,
               const std::map<std::string, TensorView> &views);
  std::string origin;
  std::vector<std::shared_ptr<MappedFile>> files;
  std::map<std::string, TensorView> byName;
};

/// Parses and validates one mapped safetensors file; returns its tensors by name.
std::map<std::string, TensorView> parseSafetensors(const MappedFile &file);

/// A tensor to write: the bytes are copied into the file as they are (little-endian host).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void *data = nullptr;
};

/// Writes a safetensors file atomically: a temporary file in the same directory is
/// written, fsynced and renamed over `path`, so a failure leaves no partial file behind.
void writeSafetensors(const std::string &path, const std::vector<TensorToWrite> &tensors);

} // namespace mixtile::runtime

#endif // MIXTILE_RUNTIME_SAFETENSORS_H
