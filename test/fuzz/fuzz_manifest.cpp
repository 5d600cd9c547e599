// libFuzzer target: the manifest loader behind mixtile_artifact_open (the input is OUTDIR's
// manifest.json; no library is there, so a manifest that passes every check still fails
// loading it, with one line). Every call succeeds or fails with one line of valid UTF-8.
#include "runtime/mixtile_runtime.h"
#include "test/fuzz/FuzzCommon.h"

#include <string>

using namespace mixtile_fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string dir = scratch() + "/artifact";
  mkdir(dir.c_str(), 0700);
  writeFile(dir + "/manifest.json", data, size);
  mixtile_artifact *artifact = nullptr;
  if (mixtile_artifact_open(dir.c_str(), &artifact) == 0) {
    for (size_t i = 0; i < mixtile_artifact_entry_count(artifact); ++i)
      (void)mixtile_artifact_entry_name(artifact, i);
    mixtile_artifact_close(artifact);
  } else {
    checkMessage(mixtile_last_error(), "mixtile_artifact_open");
  }
  return 0;
}
