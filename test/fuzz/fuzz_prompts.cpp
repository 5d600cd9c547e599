// libFuzzer target: the token-input front door of models (mixtile_model_forward and
// mixtile_model_generate: batch and length, ids, attention masks, the number of new tokens)
// over a stand-in model artifact (test/runtime/Inputs/fake_model.c: vocabulary 16, max batch
// 4, max length 24, EOS 15). The input's bytes choose the batch (0 to 5), the length (0 to
// 39), the new tokens (some negative or huge), the ids (some outside the vocabulary) and the
// mask (none, or one byte per token, some not left padding). A refusal must be one line of
// valid UTF-8; a success must keep the contract: masked rows' logits 0, every other row one
// hot at the fake model's token, generated ids in the vocabulary or the pad id, prompts copied.
#include "runtime/mixtile_runtime.h"
#include "test/fuzz/FuzzCommon.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

using namespace mixtile_fuzz;

namespace {

constexpr int64_t kVocab = 16, kMaxBatch = 4, kMaxLength = 24;

mixtile_model *model() {
  static mixtile_model *m = [] {
    const std::string dir = scratch() + "/model";
    mkdir(dir.c_str(), 0700);
    std::ifstream manifest(MIXTILE_FAKE_MODEL_MANIFEST, std::ios::binary);
    std::ofstream(dir + "/manifest.json", std::ios::binary) << manifest.rdbuf();
    std::ifstream library(MIXTILE_FAKE_MODEL_LIBRARY, std::ios::binary);
    std::ofstream(dir + "/libfake_model.so", std::ios::binary) << library.rdbuf();
    mixtile_artifact *artifact = nullptr;
    mixtile_tensors *weights = nullptr;
    mixtile_model *created = nullptr;
    if (mixtile_artifact_open(dir.c_str(), &artifact) || mixtile_tensors_create(&weights) ||
        mixtile_model_create(artifact, weights, kMaxBatch, kMaxLength, &created)) {
      std::fprintf(stderr, "fuzz_prompts: cannot set up the stand-in model: %s\n",
                   mixtile_last_error());
      std::abort();
    }
    return created;
  }();
  return m;
}

void fail(const char *what) {
  std::fprintf(stderr, "fuzz_prompts: %s\n", what);
  std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4)
    return 0;
  const int64_t batch = data[0] % 6, length = data[1] % 40;
  const int8_t tokens = static_cast<int8_t>(data[2]);
  // Mostly small counts; now and then a negative or a huge one.
  const int64_t newTokens = tokens == -128 ? INT64_MAX : tokens == 127 ? int64_t(1) << 40 : tokens;
  const bool masked = data[3] & 1;
  data += 4;
  size = size - 4;
  const int64_t count = batch * length;
  std::vector<int64_t> ids(static_cast<size_t>(count > 0 ? count : 1)), mask(ids.size(), 1);
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t byte = static_cast<size_t>(i) < size ? data[i] : 0;
    ids[i] = byte == 0xff ? INT64_MIN : byte == 0xfe ? kVocab : byte % kVocab;
    // The mask from the high bits: mostly left padding (a run of zeros, then ones), sometimes
    // a value other than 0 or 1, or a 0 after a 1.
    const uint8_t bits = static_cast<size_t>(count + i) < size ? data[count + i] : 1;
    mask[i] = bits == 0x80 ? 2 : bits & 1;
  }
  mixtile_model *m = model();
  const int64_t *maskPointer = masked ? mask.data() : nullptr;

  std::vector<float> logits(static_cast<size_t>(std::max<int64_t>(count, 1) * kVocab),
                            std::nanf(""));
  if (mixtile_model_forward(m, batch, length, ids.data(), maskPointer, logits.data(), 1) != 0) {
    checkMessage(mixtile_last_error(), "mixtile_model_forward");
  } else {
    for (int64_t b = 0; b < batch; ++b) {
      int64_t first = 0;
      while (maskPointer && first < length && mask[b * length + first] == 0)
        ++first;
      for (int64_t s = 0; s < length; ++s) {
        const float *row = &logits[(b * length + s) * kVocab];
        const int64_t hot = s < first ? -1 : (3 * ids[b * length + s] + (s - first) + 1) % kVocab;
        for (int64_t v = 0; v < kVocab; ++v)
          if (row[v] != (v == hot ? 1.0f : 0.0f))
            fail("forward: a logit is not what the stand-in model gives");
      }
    }
  }

  // Generation: a sequences buffer only as large as a valid call needs; a call the runtime
  // should refuse gets a small one (ASan sees a write past it).
  const int64_t room = newTokens >= 0 && newTokens <= kMaxLength ? newTokens : 0;
  std::vector<int64_t> sequences(static_cast<size_t>(std::max<int64_t>(batch * (length + room), 1)));
  std::vector<int64_t> generated(static_cast<size_t>(std::max<int64_t>(batch, 1)));
  if (mixtile_model_generate(m, batch, length, ids.data(), maskPointer, newTokens, sequences.data(),
                             generated.data(), nullptr, nullptr, 1) != 0) {
    checkMessage(mixtile_last_error(), "mixtile_model_generate");
    return 0;
  }
  if (newTokens != room)
    fail("generate accepted a count of new tokens it should refuse");
  const int64_t width = length + newTokens;
  for (int64_t b = 0; b < batch; ++b) {
    if (std::memcmp(&sequences[b * width], &ids[b * length], sizeof(int64_t) * length) != 0)
      fail("generate: a prompt was not copied into its sequence");
    if (generated[b] < 0 || generated[b] > newTokens)
      fail("generate: a generated count out of range");
    for (int64_t n = 0; n < newTokens; ++n) {
      const int64_t id = sequences[b * width + length + n];
      if (id < 0 || id >= kVocab)
        fail("generate: a generated id outside the vocabulary");
    }
  }
  return 0;
}
