// unlearnctl sample's contact sheet: the client's PNG reader/writer round-trips, refuses damaged
// files, and the sheet puts the images in request order, row-major, with grey gutters.
#include "client/contact_sheet.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace unlearning::client {
namespace {

Pixels Solid(int64_t w, int64_t h, int channels, uint8_t value) {
  Pixels p;
  p.width = w;
  p.height = h;
  p.channels = channels;
  p.pixels.assign(static_cast<size_t>(w * h * channels), value);
  return p;
}

uint8_t At(const Pixels& p, int64_t x, int64_t y, int ch = 0) {
  return p.pixels[static_cast<size_t>((y * p.width + x) * p.channels + ch)];
}

TEST(ContactSheetTest, PngRoundTripsGreyAndRgb) {
  for (int channels : {1, 3}) {
    Pixels in = Solid(5, 3, channels, 0);
    for (size_t i = 0; i < in.pixels.size(); ++i) in.pixels[i] = static_cast<uint8_t>(i * 17);
    absl::StatusOr<std::string> png = EncodePngPixels(in);
    ASSERT_TRUE(png.ok()) << png.status();
    absl::StatusOr<Pixels> out = DecodePngPixels(*png);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->width, 5);
    EXPECT_EQ(out->height, 3);
    EXPECT_EQ(out->channels, channels);
    EXPECT_EQ(out->pixels, in.pixels);
  }
}

TEST(ContactSheetTest, DamagedPngIsRefused) {
  absl::StatusOr<std::string> png = EncodePngPixels(Solid(4, 4, 1, 9));
  ASSERT_TRUE(png.ok());
  EXPECT_THAT(DecodePngPixels("not a png").status().message(), ::testing::HasSubstr("signature"));
  std::string damaged = *png;
  damaged[20] ^= 0x55;  // inside IHDR: its CRC no longer matches
  EXPECT_THAT(DecodePngPixels(damaged).status().message(), ::testing::HasSubstr("CRC"));
  EXPECT_FALSE(DecodePngPixels(png->substr(0, png->size() - 20)).ok());
}

TEST(ContactSheetTest, ImagesInRequestOrderRowMajorWithGutters) {
  // Five 2x2 images with values 10, 20, ..., 50 in 3 columns: rows {10,20,30} and {40,50}.
  std::vector<Pixels> images;
  for (int i = 0; i < 5; ++i) images.push_back(Solid(2, 2, 1, static_cast<uint8_t>(10 * (i + 1))));
  absl::StatusOr<Pixels> sheet = ContactSheet(images, 3);
  ASSERT_TRUE(sheet.ok()) << sheet.status();
  EXPECT_EQ(sheet->width, 3 * 2 + 2);
  EXPECT_EQ(sheet->height, 2 * 2 + 1);
  EXPECT_EQ(At(*sheet, 0, 0), 10);
  EXPECT_EQ(At(*sheet, 3, 1), 20);
  EXPECT_EQ(At(*sheet, 6, 0), 30);
  EXPECT_EQ(At(*sheet, 0, 3), 40);
  EXPECT_EQ(At(*sheet, 4, 4), 50);
  EXPECT_EQ(At(*sheet, 2, 0), 128);  // vertical gutter
  EXPECT_EQ(At(*sheet, 0, 2), 128);  // horizontal gutter
  EXPECT_EQ(At(*sheet, 7, 4), 128);  // the empty sixth cell
  // Grey cells are promoted when an RGB image is present.
  images.push_back(Solid(2, 2, 3, 200));
  sheet = ContactSheet(images, 8);
  ASSERT_TRUE(sheet.ok());
  EXPECT_EQ(sheet->channels, 3);
  EXPECT_EQ(At(*sheet, 0, 0, 2), 10);
  EXPECT_EQ(At(*sheet, 15, 0, 1), 200);
  EXPECT_EQ(SheetColumns(3), 3);
  EXPECT_EQ(SheetColumns(64), 8);
  EXPECT_FALSE(ContactSheet({}, 3).ok());
  EXPECT_FALSE(ContactSheet(images, 0).ok());
}

}  // namespace
}  // namespace unlearning::client
