#include "server/imaging/decode.h"

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"

namespace rectifier::imaging {
namespace {

// Bounds-checked big/little endian reads. Every probe checks `size` first;
// these only exist to keep the arithmetic in one place.
uint32_t Be16(const unsigned char* p) { return (uint32_t{p[0]} << 8) | p[1]; }
uint32_t Be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint32_t Le16(const unsigned char* p) { return (uint32_t{p[1]} << 8) | p[0]; }
uint32_t Le32(const unsigned char* p) {
  return (uint32_t{p[3]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[1]} << 8) | p[0];
}

absl::Status Malformed(ImageFormat format, const char* why) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed ", ImageFormatName(format), " header: ", why));
}

absl::Status Truncated(ImageFormat format, const char* why) {
  return absl::InvalidArgumentError(
      absl::StrCat("truncated ", ImageFormatName(format), " data: ", why));
}

absl::StatusOr<ImageHeader> ProbePng(const unsigned char* p, size_t size) {
  // Signature (8), IHDR length (4), "IHDR" (4), width, height, depth, colour type.
  if (size < 26) return Truncated(ImageFormat::kPng, "shorter than the IHDR chunk");
  if (std::string_view(reinterpret_cast<const char*>(p + 12), 4) != "IHDR") {
    return Malformed(ImageFormat::kPng, "first chunk is not IHDR");
  }
  ImageHeader header{ImageFormat::kPng,
                     static_cast<int>(std::min<uint32_t>(Be32(p + 16), 1u << 30)),
                     static_cast<int>(std::min<uint32_t>(Be32(p + 20), 1u << 30)), 0};
  switch (p[25]) {
    case 0:
      header.channels = 1;
      break;
    case 2:
    case 3:
      header.channels = 3;
      break;
    case 4:
      header.channels = 2;
      break;
    case 6:
      header.channels = 4;
      break;
    default:
      return Malformed(ImageFormat::kPng, "unknown colour type");
  }
  return header;
}

absl::StatusOr<ImageHeader> ProbeJpeg(const unsigned char* p, size_t size) {
  // Walk the marker segments up to the first SOFn (C0..CF except DHT C4,
  // JPG C8 and DAC CC); its payload is precision, height, width, components.
  // Markers are found as libjpeg's next_marker() finds them: bytes other
  // than 0xFF before a marker are skipped (libjpeg warns "extraneous bytes
  // before marker" and goes on), as are 0xFF fill bytes and stuffed FF 00
  // pairs. Reading a skipped byte as a marker would let junk that looks like
  // a small SOF hide the real one.
  size_t pos = 2;
  while (true) {
    unsigned char marker = 0;
    while (true) {
      while (pos < size && p[pos] != 0xFF) ++pos;
      while (pos < size && p[pos] == 0xFF) ++pos;
      if (pos >= size) return Truncated(ImageFormat::kJpeg, "no frame header (SOF)");
      marker = p[pos++];
      if (marker != 0x00) break;  // FF 00 is a stuffed zero, not a marker.
    }
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;  // No payload.
    if (marker == 0xD9 || marker == 0xDA) {
      return Malformed(ImageFormat::kJpeg, "scan or end before the frame header (SOF)");
    }
    if (pos + 2 > size) return Truncated(ImageFormat::kJpeg, "segment length cut off");
    const size_t length = Be16(p + pos);
    if (length < 2) return Malformed(ImageFormat::kJpeg, "segment length below 2");
    const bool is_sof =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (is_sof) {
      if (length < 8 || pos + 8 > size)
        return Truncated(ImageFormat::kJpeg, "frame header cut off");
      return ImageHeader{ImageFormat::kJpeg, static_cast<int>(Be16(p + pos + 5)),
                         static_cast<int>(Be16(p + pos + 3)), static_cast<int>(p[pos + 7])};
    }
    pos += length;
  }
}

absl::StatusOr<ImageHeader> ProbeBmp(const unsigned char* p, size_t size) {
  if (size < 26) return Truncated(ImageFormat::kBmp, "shorter than the info header");
  const uint32_t data_offset = Le32(p + 10);
  const uint32_t dib_size = Le32(p + 14);
  int64_t width = 0;
  int64_t height = 0;
  uint32_t bpp = 0;
  uint32_t compression = 0;
  if (dib_size == 12) {  // BITMAPCOREHEADER
    width = Le16(p + 18);
    height = Le16(p + 20);
    bpp = Le16(p + 24);
  } else if (dib_size >= 40) {
    if (size < 34) return Truncated(ImageFormat::kBmp, "info header cut off");
    width = static_cast<int32_t>(Le32(p + 18));
    height = static_cast<int32_t>(Le32(p + 22));
    bpp = Le16(p + 28);
    compression = Le32(p + 30);
  } else {
    return Malformed(ImageFormat::kBmp, "unknown info header size");
  }
  if (height < 0) height = -height;  // Top-down rows.
  if (width <= 0 || height <= 0) return Malformed(ImageFormat::kBmp, "non-positive dimensions");
  if (width > (1 << 30) || height > (1 << 30) || bpp == 0 || bpp > 32) {
    return Malformed(ImageFormat::kBmp, "implausible dimensions or bit count");
  }
  // Uncompressed (BI_RGB, BI_BITFIELDS) pixel arrays have a known size, so a
  // short file is detected here rather than decoded into garbage.
  if (compression == 0 || compression == 3) {
    const uint64_t stride = ((static_cast<uint64_t>(width) * bpp + 31) / 32) * 4;
    if (uint64_t{data_offset} + stride * static_cast<uint64_t>(height) > size) {
      return Truncated(ImageFormat::kBmp, "pixel array shorter than the header claims");
    }
  }
  return ImageHeader{ImageFormat::kBmp, static_cast<int>(width), static_cast<int>(height), 0};
}

absl::StatusOr<ImageHeader> ProbeTiff(const unsigned char* p, size_t size) {
  const bool little = p[0] == 'I';
  auto u16 = [&](size_t at) { return little ? Le16(p + at) : Be16(p + at); };
  auto u32 = [&](size_t at) { return little ? Le32(p + at) : Be32(p + at); };
  if (u16(2) == 43) return Malformed(ImageFormat::kTiff, "BigTIFF is not supported");
  const uint64_t ifd = u32(4);
  if (ifd + 2 > size) return Truncated(ImageFormat::kTiff, "first IFD beyond the data");
  const uint32_t count = u16(ifd);
  if (ifd + 2 + uint64_t{count} * 12 > size) return Truncated(ImageFormat::kTiff, "IFD cut off");
  ImageHeader header{ImageFormat::kTiff, 0, 0, 1};
  int64_t tile_width = 0;
  int64_t tile_length = 0;
  bool seen_width = false;
  bool seen_length = false;
  for (uint32_t i = 0; i < count; ++i) {
    const size_t entry = ifd + 2 + size_t{i} * 12;
    const uint32_t tag = u16(entry);
    const uint32_t type = u16(entry + 2);
    // SHORT values sit left-justified in the 4-byte value field.
    const uint32_t value = type == 3 ? u16(entry + 8) : u32(entry + 8);
    const int clamped = static_cast<int>(std::min<uint32_t>(value, 1u << 30));
    // libtiff keeps the first of a repeated tag and ignores the rest; a
    // probe that kept another would check a size libtiff never decodes.
    // Repeats of the size tags are refused outright.
    if (tag == 256) {
      if (seen_width) return Malformed(ImageFormat::kTiff, "ImageWidth given twice");
      seen_width = true;
      header.width = clamped;
    }
    if (tag == 257) {
      if (seen_length) return Malformed(ImageFormat::kTiff, "ImageLength given twice");
      seen_length = true;
      header.height = clamped;
    }
    if (tag == 277) header.channels = static_cast<int>(std::min<uint32_t>(value, 64));
    if (tag == 322) tile_width = value;
    if (tag == 323) tile_length = value;
  }
  if (header.width <= 0 || header.height <= 0) {
    return Malformed(ImageFormat::kTiff, "no ImageWidth/ImageLength in the first IFD");
  }
  // Tiles are decoded into buffers of their own size, which the header sets
  // independently of the image size. Writers round tiles up to multiples of
  // 16 and may use 256..1024 tiles on small images; more is not an image.
  auto tile_bound = [](int64_t side) { return std::max<int64_t>((side + 15) / 16 * 16, 4096); };
  if ((tile_width > 0 || tile_length > 0) &&
      (tile_width <= 0 || tile_length <= 0 || tile_width > tile_bound(header.width) ||
       tile_length > tile_bound(header.height))) {
    return Malformed(ImageFormat::kTiff, "tile size far beyond the image size");
  }
  return header;
}

absl::StatusOr<ImageHeader> ProbeWebp(const unsigned char* p, size_t size) {
  if (size < 30) return Truncated(ImageFormat::kWebp, "shorter than the first chunk header");
  const std::string_view chunk(reinterpret_cast<const char*>(p + 12), 4);
  const unsigned char* d = p + 20;
  if (chunk == "VP8 ") {
    if (d[3] != 0x9D || d[4] != 0x01 || d[5] != 0x2A) {
      return Malformed(ImageFormat::kWebp, "bad VP8 start code");
    }
    return ImageHeader{ImageFormat::kWebp, static_cast<int>(Le16(d + 6) & 0x3FFF),
                       static_cast<int>(Le16(d + 8) & 0x3FFF), 3};
  }
  if (chunk == "VP8L") {
    if (d[0] != 0x2F) return Malformed(ImageFormat::kWebp, "bad VP8L signature");
    const uint32_t bits = Le32(d + 1);
    return ImageHeader{ImageFormat::kWebp, static_cast<int>((bits & 0x3FFF) + 1),
                       static_cast<int>(((bits >> 14) & 0x3FFF) + 1), 0};
  }
  if (chunk == "VP8X") {
    const uint32_t w = uint32_t{d[4]} | (uint32_t{d[5]} << 8) | (uint32_t{d[6]} << 16);
    const uint32_t h = uint32_t{d[7]} | (uint32_t{d[8]} << 8) | (uint32_t{d[9]} << 16);
    return ImageHeader{ImageFormat::kWebp, static_cast<int>(w + 1), static_cast<int>(h + 1), 0};
  }
  return Malformed(ImageFormat::kWebp, "unknown first chunk");
}

absl::StatusOr<ImageHeader> ProbePnm(const unsigned char* p, size_t size) {
  const char kind = static_cast<char>(p[1]);
  const bool bitmap = kind == '1' || kind == '4';
  const int wanted = bitmap ? 2 : 3;  // width, height[, maxval]
  int64_t values[3] = {0, 0, 1};
  size_t pos = 2;
  // Headers are a few tokens; 4 KiB bounds the walk over hostile comments.
  const size_t limit = std::min<size_t>(size, 4096);
  for (int i = 0; i < wanted; ++i) {
    while (pos < limit && (std::isspace(p[pos]) || p[pos] == '#')) {
      if (p[pos] == '#') {
        while (pos < limit && p[pos] != '\n') ++pos;
      } else {
        ++pos;
      }
    }
    if (pos >= limit || !std::isdigit(p[pos])) return Malformed(ImageFormat::kPnm, "bad header");
    int64_t v = 0;
    while (pos < limit && std::isdigit(p[pos]) && v < (int64_t{1} << 31))
      v = v * 10 + (p[pos++] - '0');
    values[i] = v;
  }
  if (values[0] <= 0 || values[1] <= 0 || values[0] > (1 << 30) || values[1] > (1 << 30) ||
      values[2] <= 0 || values[2] > 65535) {
    return Malformed(ImageFormat::kPnm, "dimensions or maxval out of range");
  }
  const int channels = (kind == '3' || kind == '6') ? 3 : 1;
  if (kind == '5' || kind == '6') {
    // One whitespace byte separates the header from the raster.
    const uint64_t sample_bytes = values[2] > 255 ? 2 : 1;
    const uint64_t need =
        pos + 1 + static_cast<uint64_t>(values[0]) * values[1] * channels * sample_bytes;
    if (need > size) return Truncated(ImageFormat::kPnm, "raster shorter than the header claims");
  }
  return ImageHeader{ImageFormat::kPnm, static_cast<int>(values[0]), static_cast<int>(values[1]),
                     channels};
}

// Truncation checks for formats whose decoders pad missing data silently
// (libjpeg fills a cut-off scan with gray and only warns).
absl::Status CheckTrailer(const ImageHeader& header, std::string_view bytes) {
  const size_t tail = std::min<size_t>(bytes.size(), 1024);
  const std::string_view end = bytes.substr(bytes.size() - tail);
  if (header.format == ImageFormat::kJpeg && end.rfind("\xFF\xD9") == std::string_view::npos) {
    return Truncated(header.format, "no end-of-image marker");
  }
  if (header.format == ImageFormat::kPng && end.rfind("IEND") == std::string_view::npos) {
    return Truncated(header.format, "no IEND chunk");
  }
  return absl::OkStatus();
}

int CeilDiv(int a, int b) { return (a + b - 1) / b; }

}  // namespace

const char* ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kBmp:
      return "BMP";
    case ImageFormat::kTiff:
      return "TIFF";
    case ImageFormat::kWebp:
      return "WebP";
    case ImageFormat::kPnm:
      return "PNM";
    case ImageFormat::kUnknown:
      break;
  }
  return "unknown";
}

absl::StatusOr<ImageHeader> ProbeImageHeader(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t size = bytes.size();
  if (size == 0) return absl::InvalidArgumentError("empty image data");
  if (size >= 8 && bytes.substr(0, 8) == "\x89PNG\r\n\x1a\n") return ProbePng(p, size);
  if (size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return ProbeJpeg(p, size);
  if (size >= 2 && bytes.substr(0, 2) == "BM") return ProbeBmp(p, size);
  if (size >= 8 && (bytes.substr(0, 2) == "II" || bytes.substr(0, 2) == "MM")) {
    const uint32_t magic = p[0] == 'I' ? Le16(p + 2) : Be16(p + 2);
    if (magic == 42 || magic == 43) return ProbeTiff(p, size);
  }
  if (size >= 12 && bytes.substr(0, 4) == "RIFF" && bytes.substr(8, 4) == "WEBP") {
    return ProbeWebp(p, size);
  }
  if (size >= 3 && p[0] == 'P' && p[1] >= '1' && p[1] <= '6' && std::isspace(p[2])) {
    return ProbePnm(p, size);
  }
  return absl::InvalidArgumentError(
      "unrecognized image format (expected JPEG, PNG, BMP, TIFF, WebP or PGM/PPM)");
}

absl::Status CheckImageSize(const ImageHeader& header, const DecodeOptions& options,
                            size_t encoded_bytes) {
  if (header.width <= 0 || header.height <= 0) {
    return Malformed(header.format, "non-positive dimensions");
  }
  if (header.width > options.max_width || header.height > options.max_height ||
      int64_t{header.width} * header.height > options.max_pixels) {
    return absl::InvalidArgumentError(
        absl::StrCat(ImageFormatName(header.format), " image is ", header.width, "x", header.height,
                     ", over the limit of ", options.max_width, "x", options.max_height, " and ",
                     options.max_pixels, " pixels"));
  }
  // pixels > max_pixels_per_byte x encoded_bytes, without the product.
  const int64_t pixels = int64_t{header.width} * header.height;
  if (options.max_pixels_per_byte > 0 && pixels > options.ratio_exempt_pixels &&
      static_cast<uint64_t>((pixels - 1) / options.max_pixels_per_byte) >= encoded_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(ImageFormatName(header.format), " image is ", header.width, "x", header.height,
                     " (", pixels, " pixels) in ", encoded_bytes, " bytes: over the limit of ",
                     options.max_pixels_per_byte, " pixels per encoded byte for images above ",
                     options.ratio_exempt_pixels, " pixels (a decompression bomb)"));
  }
  return absl::OkStatus();
}

int JpegReduction(const ImageHeader& header, const DecodeOptions& options) {
  if (header.format != ImageFormat::kJpeg ||
      (options.min_short_side <= 0 && options.min_long_side <= 0)) {
    return 1;
  }
  const int short_side = std::min(header.width, header.height);
  const int long_side = std::max(header.width, header.height);
  for (int f : {8, 4, 2}) {
    if (short_side / f >= options.min_short_side && long_side / f >= options.min_long_side) {
      return f;
    }
  }
  return 1;
}

void InstallDecoderPixelLimit() {
  static std::once_flag once;
  std::call_once(once, [] {
    // OpenCV reads this once, at its first decode; overwrite=0 keeps an
    // operator's own (smaller) setting.
    setenv("OPENCV_IO_MAX_IMAGE_PIXELS", std::to_string(DecodeOptions().max_pixels).c_str(), 0);
  });
}

absl::StatusOr<DecodedImage> DecodeImage(std::string_view bytes, const DecodeOptions& options) {
  InstallDecoderPixelLimit();
  if (static_cast<int64_t>(bytes.size()) > options.max_encoded_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("encoded image is ", bytes.size(),
                                                   " bytes, over the limit of ",
                                                   options.max_encoded_bytes));
  }
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError("encoded image is over 2 GiB");  // cv::Mat's int sizes.
  }
  ASSIGN_OR_RETURN(const ImageHeader header, ProbeImageHeader(bytes));
  RETURN_IF_ERROR(CheckImageSize(header, options, bytes.size()));
  RETURN_IF_ERROR(CheckTrailer(header, bytes));

  int flags = cv::IMREAD_ANYDEPTH | cv::IMREAD_ANYCOLOR;
  if (!options.apply_exif_orientation) flags |= cv::IMREAD_IGNORE_ORIENTATION;
  const int reduction = JpegReduction(header, options);
  {
    // The REDUCED_GRAYSCALE_n bit selects the scale; ANYCOLOR keeps colour.
    if (reduction == 2) flags |= cv::IMREAD_REDUCED_GRAYSCALE_2;
    if (reduction == 4) flags |= cv::IMREAD_REDUCED_GRAYSCALE_4;
    if (reduction == 8) flags |= cv::IMREAD_REDUCED_GRAYSCALE_8;
  }

  DecodedImage out;
  out.format = header.format;
  out.reduction = reduction;
  try {
    const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8U,
                          const_cast<char*>(bytes.data()));  // imdecode only reads.
    out.image = cv::imdecode(encoded, flags);
  } catch (const cv::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("could not decode ", ImageFormatName(header.format), ": ", e.what()));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("could not decode ", ImageFormatName(header.format), ": ", e.what()));
  }
  if (out.image.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "could not decode ", ImageFormatName(header.format), " data (corrupt or truncated)"));
  }
  const int depth = out.image.depth();
  if (depth != CV_8U && depth != CV_16U) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported sample type in ", ImageFormatName(header.format),
                     " (only 8- and 16-bit unsigned integer samples are accepted)"));
  }
  try {
    if (out.image.channels() == 4) {
      cv::cvtColor(out.image, out.image, cv::COLOR_BGRA2BGR);
    } else if (out.image.channels() == 2) {
      cv::extractChannel(out.image, out.image, 0);
    } else if (out.image.channels() != 1 && out.image.channels() != 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported channel count ", out.image.channels()));
    }
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat("channel conversion failed: ", e.what()));
  }
  // EXIF orientations 5..8 swap the axes; tell by comparing with the header.
  const int w = CeilDiv(header.width, reduction);
  const int h = CeilDiv(header.height, reduction);
  const bool swapped = out.image.cols == h && out.image.rows == w && w != h;
  out.original_width = swapped ? header.height : header.width;
  out.original_height = swapped ? header.width : header.height;
  return out;
}

}  // namespace rectifier::imaging
