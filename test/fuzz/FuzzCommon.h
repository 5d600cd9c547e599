// Shared by the libFuzzer targets: a per-process scratch directory for the files a front door
// reads, and the check every refusal must pass (one line of valid UTF-8: untrusted bytes quoted
// escaped).
#ifndef MIXTILE_TEST_FUZZ_FUZZCOMMON_H
#define MIXTILE_TEST_FUZZ_FUZZCOMMON_H

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace mixtile_fuzz {

/// A directory of this process under $TMPDIR (or /tmp), made once.
inline const std::string &scratch() {
  static const std::string dir = [] {
    const char *tmp = std::getenv("TMPDIR");
    std::string d = std::string(tmp && *tmp ? tmp : "/tmp") + "/mixtile-fuzz-" +
                    std::to_string(getpid());
    mkdir(d.c_str(), 0700);
    return d;
  }();
  return dir;
}

/// Writes `size` bytes to `path` (replacing it).
inline void writeFile(const std::string &path, const uint8_t *data, size_t size) {
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f)
    std::abort();
  if (size && std::fwrite(data, 1, size, f) != size)
    std::abort();
  std::fclose(f);
}

/// Whether `text` is valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
inline bool validUtf8(const std::string &text) {
  const auto *s = reinterpret_cast<const unsigned char *>(text.data());
  size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > n)
      return false;
    unsigned cp = len == 1 ? c : c & (0x7f >> len);
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

/// A refusal's message: non-empty, one line, valid UTF-8. Anything else is a finding.
inline void checkMessage(const std::string &message, const char *where) {
  if (message.empty() || message.find('\n') != std::string::npos || !validUtf8(message)) {
    std::fprintf(stderr, "%s: bad error message (%zu bytes): ", where, message.size());
    for (unsigned char c : message)
      std::fprintf(stderr, c >= 0x20 && c < 0x7f ? "%c" : "\\x%02x", c);
    std::fprintf(stderr, "\n");
    std::abort();
  }
}

} // namespace mixtile_fuzz

#endif
