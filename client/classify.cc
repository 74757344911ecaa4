#include "client/classify.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include "client/contact_sheet.h"
#include "client/exit_codes.h"
#include "client/format.h"

namespace unlearning::client {

absl::StatusOr<std::vector<v1::Image>> ReadIdxImages(const std::string& path, int64_t first,
                                                     int64_t count) {
  gzFile f = gzopen(path.c_str(), "rb");  // reads uncompressed files as they are
  if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  unsigned char header[16];
  const int got = gzread(f, header, sizeof(header));
  auto fail = [&](const std::string& what) {
    gzclose(f);
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  if (got != 16 || header[0] != 0 || header[1] != 0 || header[3] != 3) {
    return fail("not an IDX image file (expected magic 0x00000803 and three dimensions)");
  }
  if (header[2] != 0x08) return fail("element type is not uint8");
  auto be32 = [&](int at) {
    return (int64_t{header[at]} << 24) | (int64_t{header[at + 1]} << 16) |
           (int64_t{header[at + 2]} << 8) | int64_t{header[at + 3]};
  };
  const int64_t n = be32(4), h = be32(8), w = be32(12);
  if (first < 0 || count < 1 || first + count > n) {
    return fail(absl::StrCat("images ", first, "..", first + count - 1, " are outside 0..", n - 1));
  }
  const int64_t size = h * w;
  std::string pixels(static_cast<size_t>(size), '\0');
  if (gzseek(f, static_cast<z_off_t>(16 + first * size), SEEK_SET) < 0) return fail("seek failed");
  std::vector<v1::Image> images;
  for (int64_t i = 0; i < count; ++i) {
    if (gzread(f, pixels.data(), static_cast<unsigned>(size)) != size) return fail("truncated");
    v1::RawImage* raw = images.emplace_back().mutable_raw();
    raw->add_shape(h);
    raw->add_shape(w);
    raw->set_dtype("uint8");
    raw->set_data(pixels);
  }
  gzclose(f);
  return images;
}

int Classify(Connection& connection, const ClassifyOptions& options) {
  v1::ClassifyRequest request;
  request.set_model_id(options.model);
  request.set_version(options.version);
  request.set_top_k(options.top_k);
  std::vector<std::string> names;
  for (const std::string& path : options.pngs) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      std::cerr << "unlearnctl classify: cannot read " << path << "\n";
      return kExitUsage;
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    request.add_images()->set_png(buffer.str());
    names.push_back(path);
  }
  if (!options.idx.empty()) {
    auto images = ReadIdxImages(options.idx, options.idx_first, options.idx_count);
    if (!images.ok()) {
      std::cerr << "unlearnctl classify: " << images.status().message() << "\n";
      return kExitUsage;
    }
    for (int64_t i = 0; i < static_cast<int64_t>(images->size()); ++i) {
      *request.add_images() = (*images)[static_cast<size_t>(i)];
      names.push_back(absl::StrCat(options.idx, "[", options.idx_first + i, "]"));
    }
  }
  if (request.images_size() == 0) {
    std::cerr << "unlearnctl classify: give PNG files or --idx FILE\n";
    return kExitUsage;
  }
  grpc::ClientContext context;
  connection.PrepareUnary(context);
  v1::ClassifyResponse response;
  grpc::Status status = connection.inference().Classify(&context, request, &response);
  if (!status.ok()) return connection.ReportRpcError(status);
  if (connection.options().json) {
    PrintJson(response);
    return kExitOk;
  }
  for (int i = 0; i < response.results_size(); ++i) {
    std::cout << names[static_cast<size_t>(i)] << ":";
    for (const v1::ClassPrediction& p : response.results(i).top()) {
      std::cout << absl::StrFormat("  %s (%d) %.3f", p.label(), p.class_id(), p.probability());
    }
    std::cout << "\n";
  }
  std::cout << "version " << response.version() << "\n";
  return kExitOk;
}

int Sample(Connection& connection, const SampleOptions& options) {
  v1::SampleRequest request;
  request.set_model_id(options.model);
  request.set_version(options.version);
  for (int64_t label : options.labels) request.add_labels(label);
  request.set_steps(options.steps);
  request.set_sampler(options.sampler);
  if (options.guidance_scale) request.set_guidance_scale(*options.guidance_scale);
  request.set_seed(options.seed);
  std::error_code ec;
  std::filesystem::create_directories(options.out, ec);
  if (ec) {
    std::cerr << "unlearnctl sample: cannot create " << options.out << ": " << ec.message() << "\n";
    return kExitUsage;
  }
  grpc::ClientContext context;
  connection.PrepareUnary(context);
  auto reader = connection.inference().Sample(&context, request);
  v1::SampleResponse response;
  int written = 0;
  // Decoded images by request index, for the contact sheet.
  std::vector<Pixels> sheet_cells(options.labels.size());
  std::vector<bool> have_cell(options.labels.size(), false);
  while (reader->Read(&response)) {
    const std::string path =
        (std::filesystem::path(options.out) /
         absl::StrFormat("%03d-class%d.png", response.index(), response.label()))
            .string();
    std::ofstream f(path, std::ios::binary);
    f << response.image().png();
    if (!f) {
      std::cerr << "unlearnctl sample: cannot write " << path << "\n";
      return kExitError;
    }
    if (connection.options().json) {
      std::cout << "{\"index\":" << response.index() << ",\"label\":" << response.label()
                << ",\"version\":" << response.version() << ",\"path\":\"" << path << "\"}\n";
    } else {
      std::cout << path << "\n";
    }
    ++written;
    const size_t index = static_cast<size_t>(response.index());
    if (index < sheet_cells.size()) {
      absl::StatusOr<Pixels> pixels = DecodePngPixels(response.image().png());
      if (!pixels.ok()) {
        std::cerr << "unlearnctl sample: image " << index << ": " << pixels.status().message()
                  << "\n";
        return kExitError;
      }
      sheet_cells[index] = *std::move(pixels);
      have_cell[index] = true;
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return connection.ReportRpcError(status);
  // The contact sheet: every image in request order, row-major.
  if (std::find(have_cell.begin(), have_cell.end(), false) != have_cell.end()) {
    std::cerr << "unlearnctl sample: the server did not send every requested image\n";
    return kExitError;
  }
  absl::StatusOr<Pixels> sheet =
      ContactSheet(sheet_cells, SheetColumns(static_cast<int64_t>(sheet_cells.size())));
  absl::StatusOr<std::string> sheet_png =
      sheet.ok() ? EncodePngPixels(*sheet) : absl::StatusOr<std::string>(sheet.status());
  if (!sheet_png.ok()) {
    std::cerr << "unlearnctl sample: contact sheet: " << sheet_png.status().message() << "\n";
    return kExitError;
  }
  const std::string sheet_path =
      (std::filesystem::path(options.out) / "contact_sheet.png").string();
  {
    std::ofstream f(sheet_path, std::ios::binary);
    f << *sheet_png;
    if (!f) {
      std::cerr << "unlearnctl sample: cannot write " << sheet_path << "\n";
      return kExitError;
    }
  }
  if (connection.options().json) {
    std::cout << "{\"contact_sheet\":\"" << sheet_path << "\",\"images\":" << written
              << ",\"columns\":" << SheetColumns(written) << "}\n";
  } else {
    std::cout << sheet_path << "\n";
  }
  if (!connection.options().json) std::cerr << written << " images written" << std::endl;
  return kExitOk;
}

}  // namespace unlearning::client
