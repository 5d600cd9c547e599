// Reading (mmap, strict validation) and atomic writing of safetensors files and checkpoint
// directories. Every message names the file and the tensor. Tensor data is never copied on
// read; nothing here knows about artifacts or manifests beyond the dtype spellings.
#include "runtime/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <set>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace mixtile::runtime {

namespace {

struct DTypeInfo {
  DType dtype;
  const char *safetensorsName;
  const char *manifestName; // nullptr: not a dtype the manifest (and hence binding) uses
  size_t bytes;
};

// The one dtype table of the runtime.
constexpr DTypeInfo kDTypes[] = {
    {DType::F32, "F32", "f32", 4},   {DType::BF16, "BF16", "bf16", 2},
    {DType::F16, "F16", "f16", 2},   {DType::I32, "I32", "i32", 4},
    {DType::F64, "F64", nullptr, 8}, {DType::I64, "I64", nullptr, 8},
    {DType::I16, "I16", nullptr, 2}, {DType::I8, "I8", nullptr, 1},
    {DType::U8, "U8", nullptr, 1},   {DType::BOOL, "BOOL", nullptr, 1},
    {DType::U16, "U16", nullptr, 2}, {DType::U32, "U32", nullptr, 4},
    {DType::U64, "U64", nullptr, 8}, {DType::F8_E4M3, "F8_E4M3", "f8_e4m3", 1},
    {DType::F8_E5M2, "F8_E5M2", nullptr, 1},
    {DType::F4_E2M1, "F4", "f4_e2m1", 1}, // bytes per element rounded up; see tensorByteSize
    {DType::F8_E8M0, "F8_E8M0", "f8_e8m0", 1},
};

const DTypeInfo &info(DType dtype) {
  for (const DTypeInfo &entry : kDTypes)
    if (entry.dtype == dtype)
      return entry;
  throw std::logic_error("unknown DType value");
}

[[noreturn]] void fail(const std::string &message) { throw std::runtime_error(message); }

[[noreturn]] void failSystem(const std::string &what, const std::string &path) {
  throw IoError(path + ": " + what + ": " + std::strerror(errno));
}

std::string joinPath(const std::string &directory, const std::string &name) {
  if (!directory.empty() && directory.back() == '/')
    return directory + name;
  return directory + "/" + name;
}

bool isDirectory(const std::string &path) {
  struct stat status;
  return ::stat(path.c_str(), &status) == 0 && S_ISDIR(status.st_mode);
}

bool fileExists(const std::string &path) {
  struct stat status;
  return ::stat(path.c_str(), &status) == 0;
}

// A non-negative integer JSON value, or a failure naming `what`.
uint64_t expectUnsigned(const nlohmann::json &value, const std::string &what) {
  if (value.is_number_unsigned())
    return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0)
    return static_cast<uint64_t>(value.get<int64_t>());
  fail(what + " must be a non-negative integer, got " + value.dump());
}

// Parses JSON text, refusing a key repeated in any one object: nlohmann would keep the last
// one silently, and a tensor named twice (in a header, or in an index's weight_map) is a
// malformed file, not a choice. `what` names the document in messages.
nlohmann::json parseJsonRejectingDuplicateKeys(const char *begin, const char *end,
                                               const std::string &where,
                                               const std::string &what = "header") {
  std::vector<std::set<std::string>> open; // the keys of each object being parsed
  auto callback = [&](int depth, nlohmann::json::parse_event_t event,
                      nlohmann::json &parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start)
      open.emplace_back();
    else if (event == Event::object_end && !open.empty())
      open.pop_back();
    else if (event == Event::key && !open.empty()) {
      std::string key = parsed.get<std::string>();
      if (!open.back().insert(key).second)
        fail(where + ": " + (depth == 1 ? "tensor" : "key") + " '" + key +
             "' is listed twice in the " + what);
    }
    return true;
  };
  try {
    return nlohmann::json::parse(begin, end, callback);
  } catch (const nlohmann::json::exception &error) {
    fail(where + ": malformed JSON " + what + ": " + error.what());
  }
}

// The real path of `path` (symlinks resolved).
std::string realPath(const std::string &path) {
  char *real = ::realpath(path.c_str(), nullptr);
  if (!real)
    failSystem("cannot resolve", path);
  std::string resolved = real;
  std::free(real);
  return resolved;
}

// `path` must resolve inside directory `root` (itself real): a symlinked shard pointing
// elsewhere on the disk is refused.
void requireContained(const std::string &root, const std::string &path, const std::string &where) {
  std::string resolved = realPath(path);
  if (resolved.compare(0, root.size() + 1, root + "/") != 0)
    fail(where + ": " + path + " resolves to " + resolved + ", outside the checkpoint directory " +
         root);
}

} // namespace

const char *safetensorsDTypeName(DType dtype) { return info(dtype).safetensorsName; }

const char *manifestDTypeName(DType dtype) {
  const char *name = info(dtype).manifestName;
  return name ? name : info(dtype).safetensorsName;
}

size_t dtypeBytes(DType dtype) { return info(dtype).bytes; }

bool parseSafetensorsDType(const std::string &text, DType &dtype) {
  for (const DTypeInfo &entry : kDTypes) {
    if (text == entry.safetensorsName) {
      dtype = entry.dtype;
      return true;
    }
  }
  return false;
}

bool parseManifestDType(const std::string &text, DType &dtype) {
  for (const DTypeInfo &entry : kDTypes) {
    if (entry.manifestName && text == entry.manifestName) {
      dtype = entry.dtype;
      return true;
    }
  }
  return false;
}

std::string formatShape(const std::vector<int64_t> &shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

size_t tensorByteSize(DType dtype, const std::vector<int64_t> &shape, const std::string &what) {
  size_t total = dtypeBytes(dtype);
  for (int64_t dim : shape) {
    if (dim < 0)
      fail(what + ": negative dimension in shape " + formatShape(shape));
    if (__builtin_mul_overflow(total, static_cast<size_t>(dim), &total))
      fail(what + ": shape " + formatShape(shape) + " is too large to address");
  }
  return dtype == DType::F4_E2M1 ? total / 2 + total % 2 : total;
}

// ---------------------------------------------------------------------------------------
// MappedFile

std::shared_ptr<MappedFile> MappedFile::open(const std::string &path) {
  // O_NONBLOCK: opening a FIFO named like a checkpoint must not wait for a writer; it is
  // refused below as not a regular file.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    failSystem("cannot open", path);
  struct stat status;
  if (::fstat(fd, &status) != 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    failSystem("cannot stat", path);
  }
  if (!S_ISREG(status.st_mode)) {
    ::close(fd);
    fail(path + ": not a regular file");
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->filePath = path;
  file->length = static_cast<size_t>(status.st_size);
  // mmap of length 0 is invalid; an empty file is reported as too short by the parser.
  if (file->length > 0) {
    void *base = ::mmap(nullptr, file->length, PROT_READ, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED) {
      int saved = errno;
      ::close(fd);
      errno = saved;
      failSystem("cannot mmap", path);
    }
    file->base = base;
  }
  file->fd = fd; // kept open: checkUnchanged() fstats it
  file->mtimeSeconds = static_cast<int64_t>(status.st_mtim.tv_sec);
  file->mtimeNanoseconds = static_cast<int64_t>(status.st_mtim.tv_nsec);
  return file;
}

MappedFile::~MappedFile() {
  if (base)
    ::munmap(base, length);
  if (fd >= 0)
    ::close(fd);
}

void MappedFile::checkUnchanged() const {
  struct stat status;
  if (::fstat(fd, &status) != 0)
    failSystem("cannot stat", filePath);
  const size_t now = static_cast<size_t>(status.st_size);
  if (now != length)
    throw IoError(filePath + ": the file changed while mapped (" + std::to_string(length) +
                  " bytes when opened, " + std::to_string(now) +
                  " now): results computed from it are discarded; open it again");
  if (static_cast<int64_t>(status.st_mtim.tv_sec) != mtimeSeconds ||
      static_cast<int64_t>(status.st_mtim.tv_nsec) != mtimeNanoseconds)
    throw IoError(filePath + ": the file was modified in place while mapped: results "
                             "computed from it are discarded; open it again");
}

// ---------------------------------------------------------------------------------------
// Parsing

std::map<std::string, TensorView> parseSafetensors(const MappedFile &file) {
  const std::string &path = file.path();
  if (file.size() < 8)
    fail(path + ": file has " + std::to_string(file.size()) +
         " bytes, too short for the 8-byte header length");
  uint64_t headerLength = 0;
  for (int i = 7; i >= 0; --i) // little-endian, whatever the host
    headerLength = (headerLength << 8) | file.data()[i];
  // As the reference implementation does, refuse headers over 100 MB: no real checkpoint's
  // header comes near it, and a hostile one should not make the parser allocate gigabytes.
  constexpr uint64_t kMaxHeaderBytes = 100000000;
  if (headerLength > kMaxHeaderBytes)
    fail(path + ": header length " + std::to_string(headerLength) + " exceeds the limit of " +
         std::to_string(kMaxHeaderBytes) + " bytes");
  if (headerLength > file.size() - 8)
    fail(path + ": header length " + std::to_string(headerLength) +
         " runs past the end of the file (" + std::to_string(file.size()) + " bytes)");

  const char *headerBegin = reinterpret_cast<const char *>(file.data() + 8);
  nlohmann::json header =
      parseJsonRejectingDuplicateKeys(headerBegin, headerBegin + headerLength, path);
  if (!header.is_object())
    fail(path + ": malformed header: expected a JSON object, got " +
         std::string(header.type_name()));

  const uint8_t *dataBegin = file.data() + 8 + headerLength;
  const uint64_t dataSize = file.size() - 8 - headerLength;

  std::map<std::string, TensorView> views;
  struct Extent {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Extent> extents;
  for (auto item = header.begin(); item != header.end(); ++item) {
    const std::string &name = item.key();
    if (name == "__metadata__") {
      if (!item.value().is_object())
        fail(path + ": __metadata__ must be a JSON object");
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    const nlohmann::json &entry = item.value();
    if (!entry.is_object())
      fail(where + ": expected an object with dtype, shape and data_offsets");
    for (const char *field : {"dtype", "shape", "data_offsets"})
      if (!entry.contains(field))
        fail(where + ": missing field '" + field + "'");

    TensorView view;
    view.name = name;
    view.source = path;
    view.mapped = true;
    if (!entry["dtype"].is_string())
      fail(where + ": dtype must be a string, got " + entry["dtype"].dump());
    const std::string dtypeText = entry["dtype"].get<std::string>();
    if (!parseSafetensorsDType(dtypeText, view.dtype))
      fail(where + ": unknown dtype '" + dtypeText + "'");

    if (!entry["shape"].is_array())
      fail(where + ": shape must be an array, got " + entry["shape"].dump());
    for (const nlohmann::json &dim : entry["shape"]) {
      uint64_t value = expectUnsigned(dim, where + ": every dimension of shape");
      if (value > static_cast<uint64_t>(INT64_MAX))
        fail(where + ": dimension " + std::to_string(value) + " is too large");
      view.shape.push_back(static_cast<int64_t>(value));
    }

    const nlohmann::json &offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2)
      fail(where + ": data_offsets must be [begin, end], got " + offsets.dump());
    uint64_t begin = expectUnsigned(offsets[0], where + ": data_offsets[0]");
    uint64_t end = expectUnsigned(offsets[1], where + ": data_offsets[1]");
    const std::string offsetsText =
        "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "]";
    if (end < begin)
      fail(where + ": " + offsetsText + " end before they begin");
    if (end > dataSize)
      fail(where + ": " + offsetsText + " run past the end of the data (" +
           std::to_string(dataSize) + " bytes); is the file truncated?");
    size_t expected = tensorByteSize(view.dtype, view.shape, where);
    if (end - begin != expected)
      fail(where + ": " + offsetsText + " hold " + std::to_string(end - begin) +
           " bytes but " + dtypeText + " " + formatShape(view.shape) + " needs " +
           std::to_string(expected));
    view.data = dataBegin + begin;
    view.bytes = expected;
    if (expected > 0)
      extents.push_back({begin, end, name});
    views.emplace(name, std::move(view));
  }

  // Tensors must not share bytes, and (as the reference implementation requires) they must
  // cover the data buffer exactly: a hole or trailing bytes mean a damaged or foreign file.
  std::sort(extents.begin(), extents.end(),
            [](const Extent &a, const Extent &b) { return a.begin < b.begin; });
  uint64_t covered = 0;
  for (size_t i = 0; i < extents.size(); ++i) {
    if (i > 0 && extents[i].begin < extents[i - 1].end)
      fail(path + ": tensors '" + extents[i - 1].name + "' and '" + extents[i].name +
           "' overlap (bytes " + std::to_string(extents[i].begin) + " to " +
           std::to_string(std::min(extents[i].end, extents[i - 1].end)) + ")");
    if (extents[i].begin != covered)
      fail(path + ": " + std::to_string(extents[i].begin - covered) +
           " bytes before tensor '" + extents[i].name + "' belong to no tensor");
    covered = extents[i].end;
  }
  if (covered != dataSize)
    fail(path + ": " + std::to_string(dataSize - covered) +
         " bytes at the end of the data belong to no tensor");
  return views;
}

// ---------------------------------------------------------------------------------------
// TensorSet

void TensorSet::addFile(const std::shared_ptr<MappedFile> &file,
                        const std::map<std::string, TensorView> &views) {
  files.push_back(file);
  for (const auto &[name, view] : views) {
    auto inserted = byName.emplace(name, view);
    if (!inserted.second)
      fail(origin + ": tensor '" + name + "' is present in both " +
           inserted.first->second.source + " and " + view.source);
  }
}

void TensorSet::checkUnchanged() const {
  for (const std::shared_ptr<MappedFile> &file : files)
    file->checkUnchanged();
}

std::unique_ptr<TensorSet> TensorSet::empty(const std::string &description) {
  std::unique_ptr<TensorSet> set(new TensorSet());
  set->origin = description;
  return set;
}

std::unique_ptr<TensorSet> TensorSet::open(const std::string &path) {
  std::unique_ptr<TensorSet> set = empty(path);
  if (!isDirectory(path)) {
    std::shared_ptr<MappedFile> file = MappedFile::open(path);
    set->addFile(file, parseSafetensors(*file));
    return set;
  }

  const std::string indexPath = joinPath(path, "model.safetensors.index.json");
  if (fileExists(indexPath)) {
    // A sharded Hugging Face checkpoint: the index is authoritative about where each
    // tensor lives; tensors a shard holds but the index does not list are not bound.
    std::shared_ptr<MappedFile> indexFile = MappedFile::open(indexPath);
    const char *text = reinterpret_cast<const char *>(indexFile->data());
    nlohmann::json index =
        parseJsonRejectingDuplicateKeys(text, text + indexFile->size(), indexPath, "index");
    const std::string root = realPath(path);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      fail(indexPath + ": expected an object with a \"weight_map\" object");
    std::map<std::string, std::map<std::string, TensorView>> shards; // shard name -> views
    std::map<std::string, std::shared_ptr<MappedFile>> shardFiles;
    for (auto item = index["weight_map"].begin(); item != index["weight_map"].end(); ++item) {
      if (!item.value().is_string())
        fail(indexPath + ": weight_map['" + item.key() + "'] must be a file name");
      const std::string shard = item.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos)
        fail(indexPath + ": weight_map['" + item.key() + "'] = '" + shard +
             "' must name a file in the checkpoint directory");
      if (!shardFiles.count(shard)) {
        requireContained(root, joinPath(path, shard), indexPath);
        std::shared_ptr<MappedFile> file = MappedFile::open(joinPath(path, shard));
        shards[shard] = parseSafetensors(*file);
        shardFiles[shard] = file;
      }
    }
    std::map<std::string, TensorView> listed;
    for (auto item = index["weight_map"].begin(); item != index["weight_map"].end(); ++item) {
      const std::string shard = item.value().get<std::string>();
      auto found = shards[shard].find(item.key());
      if (found == shards[shard].end())
        fail(indexPath + ": tensor '" + item.key() + "' is listed in shard '" + shard +
             "' but " + joinPath(path, shard) + " does not hold it");
      listed.emplace(item.key(), found->second);
    }
    for (const auto &[shard, file] : shardFiles)
      set->files.push_back(file);
    set->byName = std::move(listed);
    return set;
  }

  std::vector<std::string> names;
  DIR *directory = ::opendir(path.c_str());
  if (!directory)
    failSystem("cannot read directory", path);
  while (struct dirent *entry = ::readdir(directory)) {
    std::string name = entry->d_name;
    const std::string suffix = ".safetensors";
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      names.push_back(name);
  }
  ::closedir(directory);
  if (names.empty())
    fail(path + ": directory holds no *.safetensors file and no model.safetensors.index.json");
  std::sort(names.begin(), names.end()); // a stable order makes duplicate messages stable
  const std::string root = realPath(path);
  for (const std::string &name : names) {
    requireContained(root, joinPath(path, name), path);
    std::shared_ptr<MappedFile> file = MappedFile::open(joinPath(path, name));
    set->addFile(file, parseSafetensors(*file));
  }
  return set;
}

void TensorSet::addBorrowed(const std::string &name, DType dtype,
                            const std::vector<int64_t> &shape, const void *data, bool onDevice) {
  TensorView view;
  view.name = name;
  view.dtype = dtype;
  view.shape = shape;
  view.data = data;
  view.source = onDevice ? "<device memory>" : "<memory>";
  view.onDevice = onDevice;
  view.bytes = tensorByteSize(dtype, shape, "tensor '" + name + "'");
  if (!data && view.bytes > 0)
    fail("tensor '" + name + "': data pointer is null");
  if (!byName.emplace(name, view).second)
    fail(origin + ": tensor '" + name + "' was added twice");
}

const TensorView *TensorSet::find(const std::string &name) const {
  auto found = byName.find(name);
  return found == byName.end() ? nullptr : &found->second;
}

// ---------------------------------------------------------------------------------------
// Writing

namespace {

void writeAll(int fd, const void *data, size_t size, const std::string &path) {
  const char *bytes = static_cast<const char *>(data);
  while (size > 0) {
    ssize_t written = ::write(fd, bytes, size);
    if (written < 0) {
      if (errno == EINTR)
        continue;
      failSystem("cannot write", path);
    }
    bytes += written;
    size -= static_cast<size_t>(written);
  }
}

} // namespace

void writeSafetensors(const std::string &path, const std::vector<TensorToWrite> &tensors) {
  // ordered_json keeps the caller's order (the manifest's result order) in the header.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}, {"producer", "mixtile"}};
  uint64_t offset = 0;
  std::vector<size_t> sizes;
  for (const TensorToWrite &tensor : tensors) {
    size_t bytes = tensorByteSize(tensor.dtype, tensor.shape, "result '" + tensor.name + "'");
    header[tensor.name] = {{"dtype", safetensorsDTypeName(tensor.dtype)},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    sizes.push_back(bytes);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' '); // pad so the data starts 8-byte aligned
  uint8_t lengthBytes[8];
  for (int i = 0; i < 8; ++i)
    lengthBytes[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));

  // A path that exists and is not a regular file (a device such as /dev/full or /dev/null, a
  // FIFO) is written in place: renaming a file over it would replace the device node. A
  // directory is refused.
  struct stat existing;
  if (::stat(path.c_str(), &existing) == 0 && !S_ISREG(existing.st_mode)) {
    if (S_ISDIR(existing.st_mode))
      throw IoError(path + ": is a directory, not a file to write the results to");
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      failSystem("cannot open", path);
    try {
      writeAll(fd, lengthBytes, 8, path);
      writeAll(fd, text.data(), text.size(), path);
      for (size_t i = 0; i < tensors.size(); ++i)
        writeAll(fd, tensors[i].data, sizes[i], path);
    } catch (...) {
      ::close(fd);
      throw;
    }
    if (::close(fd) != 0)
      failSystem("cannot close", path);
    return;
  }

  // The temporary file lives in the target's directory so rename() is atomic.
  std::string pattern = path + ".tmp.XXXXXX";
  int fd = ::mkstemp(pattern.data());
  if (fd < 0)
    failSystem("cannot create a temporary file beside", path);
  const std::string temporary = pattern;
  try {
    writeAll(fd, lengthBytes, 8, temporary);
    writeAll(fd, text.data(), text.size(), temporary);
    for (size_t i = 0; i < tensors.size(); ++i)
      writeAll(fd, tensors[i].data, sizes[i], temporary);
    ::fchmod(fd, 0644); // mkstemp creates 0600; results are ordinary files
    if (::fsync(fd) != 0)
      failSystem("cannot fsync", temporary);
    if (::close(fd) != 0) {
      fd = -1;
      failSystem("cannot close", temporary);
    }
    fd = -1;
    if (::rename(temporary.c_str(), path.c_str()) != 0)
      throw IoError(path + ": cannot rename " + temporary + " into place: " +
                    std::strerror(errno));
  } catch (...) {
    if (fd >= 0)
      ::close(fd);
    ::unlink(temporary.c_str());
    throw;
  }
}

} // namespace mixtile::runtime
