// unlearnctl classify and sample: top-k classes of PNG files or of images from an IDX file (e.g.
// Fashion-MNIST's t10k-images-idx3-ubyte[.gz]) on an image classifier.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "client/connection.h"
#include "unlearning/v1/inference.pb.h"

namespace unlearning::client {

struct ClassifyOptions {
  std::string model;
  int64_t version = 0;
  int top_k = 0;                  // 0 = the server's default
  std::vector<std::string> pngs;  // PNG files
  std::string idx;                // an IDX image file (uint8 [N, H, W]), gzip or not
  int64_t idx_first = 0;          // first image of the IDX file
  int64_t idx_count = 8;          // how many images of the IDX file
};

// Reads images [first, first + count) of an IDX uint8 image file (optionally gzip-compressed) as
// raw images. kNotFound if the file is missing; kInvalidArgument naming the file for a bad
// header, element type or range.
absl::StatusOr<std::vector<v1::Image>> ReadIdxImages(const std::string& path, int64_t first,
                                                     int64_t count);

int Classify(Connection& connection, const ClassifyOptions& options);

// unlearnctl sample: images of a class-conditional generator, written as
// OUT/<index>-class<label>.png, plus OUT/contact_sheet.png: every image in request order in one
// grid (row-major, at most 8 per row; client/contact_sheet.h).
struct SampleOptions {
  std::string model;
  int64_t version = 0;
  std::vector<int64_t> labels;
  int steps = 0;  // 0 = the server's default
  std::string sampler;
  std::optional<double> guidance_scale;
  uint64_t seed = 0;
  std::string out;
};
int Sample(Connection& connection, const SampleOptions& options);

}  // namespace unlearning::client
