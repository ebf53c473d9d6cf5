#include "server/imaging/dicom_scan.h"

#include <dcmtk/config/osconfig.h>  // Must come first among DCMTK headers.
#include <dcmtk/dcmdata/dctag.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/common/status_macros.h"

namespace rectifier::imaging {
namespace {

constexpr uint32_t kUndefinedLength = 0xFFFFFFFFu;
constexpr uint64_t kNoEnd = std::numeric_limits<uint64_t>::max();

absl::Status Bad(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("malformed DICOM: ", why));
}

std::string TagName(uint16_t group, uint16_t element) {
  return absl::StrFormat("(%04X,%04X)", group, element);
}

// Forward-only byte source: the file itself, or its inflated dataset.
class Reader {
 public:
  virtual ~Reader() = default;
  // Points *out at the next n (<= 64 KiB) bytes and consumes them; false at
  // the end of data or on an error (error()).
  virtual bool Next(size_t n, const uint8_t** out) = 0;
  // Consumes n bytes without keeping them; false if fewer are left.
  virtual bool Skip(uint64_t n) = 0;
  virtual bool AtEnd() = 0;
  uint64_t position() const { return position_; }
  const absl::Status& error() const { return error_; }

 protected:
  uint64_t position_ = 0;
  absl::Status error_;
};

class MemoryReader final : public Reader {
 public:
  explicit MemoryReader(std::string_view bytes)
      : data_(reinterpret_cast<const uint8_t*>(bytes.data())), size_(bytes.size()) {}
  bool Next(size_t n, const uint8_t** out) override {
    if (n > size_ - position_) return false;
    *out = data_ + position_;
    position_ += n;
    return true;
  }
  bool Skip(uint64_t n) override {
    if (n > size_ - position_) return false;
    position_ += n;
    return true;
  }
  bool AtEnd() override { return position_ == size_; }

 private:
  const uint8_t* data_;
  uint64_t size_;
};

// Raw deflate (PS3.5 A.5, RFC 1951), inflated in 64 KiB steps; refuses to
// produce more than `cap` bytes.
class InflateReader final : public Reader {
 public:
  InflateReader(std::string_view compressed, uint64_t cap) : cap_(cap), buffer_(kBuffer) {
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
    stream_.avail_in = static_cast<uInt>(compressed.size());
    if (inflateInit2(&stream_, -MAX_WBITS) != Z_OK) {
      error_ = absl::InternalError("zlib inflateInit2 failed");
      ended_ = true;
    } else {
      initialized_ = true;
    }
  }
  ~InflateReader() override {
    if (initialized_) inflateEnd(&stream_);
  }
  bool Next(size_t n, const uint8_t** out) override {
    if (!Ensure(n)) return false;
    *out = buffer_.data() + begin_;
    begin_ += n;
    position_ += n;
    return true;
  }
  bool Skip(uint64_t n) override {
    while (n > 0) {
      if (begin_ == end_ && !Ensure(1)) return false;
      const uint64_t take = std::min<uint64_t>(n, end_ - begin_);
      begin_ += take;
      position_ += take;
      n -= take;
    }
    return true;
  }
  bool AtEnd() override { return !Ensure(1) && error_.ok(); }
  // Limits the total inflated size from here on (it only ever shrinks).
  void Cap(uint64_t cap) { cap_ = std::min(cap_, cap); }

 private:
  static constexpr size_t kBuffer = 128 << 10;

  // Makes n bytes available at begin_; false if the stream ends first.
  bool Ensure(size_t n) {
    while (end_ - begin_ < n) {
      if (ended_ || !error_.ok()) return false;
      if (begin_ > 0) {
        std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      stream_.next_out = buffer_.data() + end_;
      stream_.avail_out = static_cast<uInt>(buffer_.size() - end_);
      const int result = inflate(&stream_, Z_NO_FLUSH);
      const size_t produced = buffer_.size() - end_ - stream_.avail_out;
      end_ += produced;
      inflated_ += produced;
      if (inflated_ > cap_) {
        error_ = absl::InvalidArgumentError(
            absl::StrCat("DICOM: the deflated dataset inflates past ", cap_,
                         " bytes, more than its header and declared image geometry allow"));
        return false;
      }
      if (result == Z_STREAM_END) {
        ended_ = true;
      } else if (result != Z_OK && !(result == Z_BUF_ERROR && produced > 0)) {
        if (result == Z_BUF_ERROR && stream_.avail_in == 0 && !padded_) {
          // DCMTK feeds raw inflate one zero byte after the data (zlib may
          // need a byte past the end to finish its last symbol), which can
          // complete a long match the data alone leaves pending: read what
          // DCMTK will read.
          static const Bytef kPad = 0;
          stream_.next_in = const_cast<Bytef*>(&kPad);
          stream_.avail_in = 1;
          padded_ = true;
        } else if (result == Z_BUF_ERROR && stream_.avail_in == 0) {
          ended_ = true;  // Input exhausted: truncated, reported by the caller.
        } else {
          error_ = Bad(absl::StrCat("deflate stream: ", stream_.msg ? stream_.msg : "corrupt"));
          return false;
        }
      }
    }
    return true;
  }

  z_stream stream_{};
  bool initialized_ = false;
  bool ended_ = false;
  bool padded_ = false;  // the zero byte after the data was fed
  uint64_t cap_;
  uint64_t inflated_ = 0;
  std::vector<uint8_t> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

enum class Encoding { kExplicitLittle, kImplicitLittle, kExplicitBig };

bool IsLongVr(const char* vr) {
  static constexpr std::array<const char*, 13> kLong = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                                        "UC", "UN", "UR", "UT", "SV", "UV"};
  return std::any_of(kLong.begin(), kLong.end(),
                     [&](const char* v) { return vr[0] == v[0] && vr[1] == v[1]; });
}

bool IsKnownVr(const char* vr) {
  static constexpr std::array<const char*, 21> kShort = {"AE", "AS", "AT", "CS", "DA", "DS", "DT",
                                                         "FL", "FD", "IS", "LO", "LT", "PN", "SH",
                                                         "SL", "SS", "ST", "TM", "UI", "UL", "US"};
  return IsLongVr(vr) || std::any_of(kShort.begin(), kShort.end(),
                                     [&](const char* v) { return vr[0] == v[0] && vr[1] == v[1]; });
}

struct ElementHeader {
  uint16_t group = 0;
  uint16_t element = 0;
  char vr[3] = {0, 0, 0};  // Empty for implicit VR and items.
  uint32_t length = 0;
  uint64_t header_bytes = 0;
};

class Walker {
 public:
  Walker(Reader& reader, InflateReader* inflate, bool rle, bool jpeg, const DicomScanLimits& limits,
         DicomScan& scan)
      : reader_(reader), inflate_(inflate), rle_(rle), jpeg_(jpeg), limits_(limits), scan_(scan) {}

  // Elements until `end` (kNoEnd: the end of data), or until an item
  // delimitation item when `until_delimiter`.
  absl::Status WalkItem(Encoding encoding, int depth, uint64_t end, bool until_delimiter) {
    if (depth > limits_.max_depth) {
      return Bad(absl::StrCat("sequences nested deeper than ", limits_.max_depth, " levels"));
    }
    while (true) {
      if (end != kNoEnd) {
        if (reader_.position() == end) return absl::OkStatus();
        if (reader_.position() > end) return Bad("an element runs past its item's length");
      } else if (!until_delimiter && reader_.AtEnd()) {
        return reader_.error();
      }
      ElementHeader h;
      RETURN_IF_ERROR(ReadHeader(encoding, h));
      if (h.group == 0xFFFE) {
        if (until_delimiter && h.element == 0xE00D) return Count(h.header_bytes);
        return Bad(absl::StrCat("unexpected item tag ", TagName(h.group, h.element)));
      }
      if (end != kNoEnd && h.length != kUndefinedLength && reader_.position() + h.length > end) {
        return Bad(absl::StrCat("element ", TagName(h.group, h.element), " length ", h.length,
                                " runs past its item"));
      }
      RETURN_IF_ERROR(Element(encoding, depth, h));
    }
  }

 private:
  absl::Status Truncated(const ElementHeader* h) {
    if (!reader_.error().ok()) return reader_.error();
    if (h == nullptr) return Bad("data ends inside an element header");
    return Bad(absl::StrCat("element ", TagName(h->group, h->element), " declares ", h->length,
                            " bytes, more than the data holds"));
  }

  uint16_t U16(const uint8_t* p, Encoding e) const {
    return e == Encoding::kExplicitBig ? static_cast<uint16_t>((p[0] << 8) | p[1])
                                       : static_cast<uint16_t>(p[0] | (p[1] << 8));
  }
  uint32_t U32(const uint8_t* p, Encoding e) const {
    return e == Encoding::kExplicitBig
               ? (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3]
               : (uint32_t{p[3]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[1]} << 8) | p[0];
  }

  absl::Status Count(uint64_t bytes) {
    header_bytes_ += bytes;
    if (header_bytes_ > static_cast<uint64_t>(limits_.max_header_bytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("DICOM: more than ", limits_.max_header_bytes,
                       " bytes of elements other than the pixel data"));
    }
    return absl::OkStatus();
  }

  absl::Status ReadHeader(Encoding encoding, ElementHeader& h) {
    const uint8_t* p = nullptr;
    if (!reader_.Next(4, &p)) return Truncated(nullptr);
    h.group = U16(p, encoding);
    h.element = U16(p + 2, encoding);
    if (h.group == 0xFFFE || encoding == Encoding::kImplicitLittle) {
      if (!reader_.Next(4, &p)) return Truncated(nullptr);
      h.length = U32(p, encoding);
      h.header_bytes = 8;
      return absl::OkStatus();
    }
    if (!reader_.Next(2, &p)) return Truncated(nullptr);
    h.vr[0] = static_cast<char>(p[0]);
    h.vr[1] = static_cast<char>(p[1]);
    if (!IsKnownVr(h.vr)) {
      return Bad(absl::StrCat("element ", TagName(h.group, h.element), " has no valid VR"));
    }
    if (IsLongVr(h.vr)) {
      if (!reader_.Next(6, &p)) return Truncated(nullptr);
      h.length = U32(p + 2, encoding);
      h.header_bytes = 12;
    } else {
      if (!reader_.Next(2, &p)) return Truncated(nullptr);
      h.length = U16(p, encoding);
      h.header_bytes = 8;
    }
    return absl::OkStatus();
  }

  bool IsSequence(Encoding encoding, const ElementHeader& h) const {
    if (encoding != Encoding::kImplicitLittle) return std::strcmp(h.vr, "SQ") == 0;
    // Implicit VR: DCMTK takes the VR from its data dictionary, as here.
    return DcmTag(h.group, h.element).getEVR() == EVR_SQ;
  }

  absl::Status Element(Encoding encoding, int depth, const ElementHeader& h) {
    const bool top = depth == 0;
    const bool pixel_data = h.group == 0x7FE0 && h.element == 0x0010;
    if (top && pixel_data) return PixelData(encoding, h);
    RETURN_IF_ERROR(Count(h.header_bytes));
    if (pixel_data && h.length == kUndefinedLength) {
      // Encapsulated pixel data inside a sequence (an icon image): its
      // fragments count as header bytes, nothing else is checked.
      return Fragments(encoding);
    }
    if (h.length == kUndefinedLength) {
      const bool un = std::strcmp(h.vr, "UN") == 0;
      if (!IsSequence(encoding, h) && !un) {
        return Bad(absl::StrCat("undefined length on element ", TagName(h.group, h.element),
                                ", which is not a sequence"));
      }
      // An undefined-length UN is a sequence in Implicit VR Little Endian.
      return Sequence(un ? Encoding::kImplicitLittle : encoding, depth + 1, kNoEnd);
    }
    if (IsSequence(encoding, h)) {
      return Sequence(encoding, depth + 1, reader_.position() + h.length);
    }
    RETURN_IF_ERROR(Count(h.length));
    if (top && h.group == 0x0028 && h.length <= 64) return Geometry(encoding, h);
    if (!reader_.Skip(h.length)) return Truncated(&h);
    return absl::OkStatus();
  }

  absl::Status Sequence(Encoding encoding, int depth, uint64_t end) {
    if (depth > limits_.max_depth) {
      return Bad(absl::StrCat("sequences nested deeper than ", limits_.max_depth, " levels"));
    }
    while (end == kNoEnd || reader_.position() < end) {
      ElementHeader item;
      RETURN_IF_ERROR(ReadHeader(encoding, item));
      RETURN_IF_ERROR(Count(item.header_bytes));
      if (item.group != 0xFFFE) {
        return Bad(absl::StrCat("sequence holds ", TagName(item.group, item.element),
                                " where an item was expected"));
      }
      if (item.element == 0xE0DD) {
        if (end != kNoEnd) return Bad("sequence delimiter in a defined-length sequence");
        return absl::OkStatus();
      }
      if (item.element != 0xE000) {
        return Bad(absl::StrCat("unexpected item tag ", TagName(item.group, item.element)));
      }
      if (item.length == kUndefinedLength) {
        RETURN_IF_ERROR(WalkItem(encoding, depth, kNoEnd, /*until_delimiter=*/true));
      } else {
        const uint64_t item_end = reader_.position() + item.length;
        if (end != kNoEnd && item_end > end) return Bad("an item runs past its sequence");
        RETURN_IF_ERROR(WalkItem(encoding, depth, item_end, /*until_delimiter=*/false));
      }
    }
    if (reader_.position() > end) return Bad("an item runs past its sequence");
    return absl::OkStatus();
  }

  // Items of encapsulated pixel data up to the sequence delimiter, skipped.
  absl::Status Fragments(Encoding encoding) {
    while (true) {
      ElementHeader item;
      RETURN_IF_ERROR(ReadHeader(encoding, item));
      RETURN_IF_ERROR(Count(item.header_bytes));
      if (item.group == 0xFFFE && item.element == 0xE0DD) return absl::OkStatus();
      if (item.group != 0xFFFE || item.element != 0xE000 || item.length == kUndefinedLength) {
        return Bad(absl::StrCat("encapsulated PixelData holds ", TagName(item.group, item.element),
                                " where a fragment item was expected"));
      }
      RETURN_IF_ERROR(Count(item.length));
      if (!reader_.Skip(item.length)) return Truncated(&item);
    }
  }

  // Rows, Columns, SamplesPerPixel, BitsAllocated (US) and NumberOfFrames (IS).
  absl::Status Geometry(Encoding encoding, const ElementHeader& h) {
    const uint8_t* p = nullptr;
    if (h.length > 0 && !reader_.Next(h.length, &p)) return Truncated(&h);
    const bool us = h.length == 2;
    const int value = us ? U16(p, encoding) : 0;
    switch (h.element) {
      case 0x0010:
        if (us) scan_.rows = value;
        break;
      case 0x0011:
        if (us) scan_.columns = value;
        break;
      case 0x0002:
        if (us) scan_.samples_per_pixel = value;
        break;
      case 0x0100:
        if (us) scan_.bits_allocated = value;
        break;
      case 0x0008: {
        absl::string_view text(reinterpret_cast<const char*>(p), h.length);
        text = absl::StripAsciiWhitespace(text);
        while (!text.empty() && text.back() == '\0') text.remove_suffix(1);
        int64_t frames = 0;
        if (absl::SimpleAtoi(text, &frames) && frames > 0) scan_.frames = frames;
        break;
      }
      default:
        break;
    }
    return absl::OkStatus();
  }

  absl::Status ExpectedPixelBytes() {
    if (scan_.rows <= 0 || scan_.columns <= 0) {
      return Bad("PixelData before (or without) Rows and Columns");
    }
    const int64_t pixels = int64_t{scan_.rows} * scan_.columns;
    if (pixels > limits_.max_pixels) {
      return absl::InvalidArgumentError(absl::StrCat("DICOM image is ", scan_.columns, "x",
                                                     scan_.rows, ", over the limit of ",
                                                     limits_.max_pixels, " pixels"));
    }
    if (scan_.samples_per_pixel < 1 || scan_.samples_per_pixel > 4) {
      return Bad(absl::StrCat("SamplesPerPixel ", scan_.samples_per_pixel, " (1 to 4 accepted)"));
    }
    if (scan_.bits_allocated < 1 || scan_.bits_allocated > 64) {
      return Bad(absl::StrCat("BitsAllocated ", scan_.bits_allocated, " (1 to 64 accepted)"));
    }
    // Each factor is bounded, so the product fits: 2^26 x 4 x 64 x frames.
    const int64_t frame_bits = pixels * scan_.samples_per_pixel * scan_.bits_allocated;
    const int64_t frame_bytes = (frame_bits + 7) / 8;
    if (scan_.frames > limits_.max_pixel_bytes / std::max<int64_t>(frame_bytes, 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DICOM: ", scan_.frames, " frames of ", scan_.columns, "x", scan_.rows,
          " declare more than the limit of ", limits_.max_pixel_bytes, " pixel bytes"));
    }
    scan_.expected_pixel_bytes = frame_bytes * scan_.frames;
    return absl::OkStatus();
  }

  absl::Status PixelData(Encoding encoding, const ElementHeader& h) {
    RETURN_IF_ERROR(Count(h.header_bytes));
    RETURN_IF_ERROR(ExpectedPixelBytes());
    if (h.length != kUndefinedLength) {
      // Native: the value is the pixels. Twice the geometry (plus a pad
      // byte) tolerates writers that pad; more is a bomb, not an image.
      const uint64_t allowed = 2 * static_cast<uint64_t>(scan_.expected_pixel_bytes) + 16;
      if (h.length > allowed) {
        return absl::InvalidArgumentError(absl::StrCat(
            "DICOM: PixelData declares ", h.length,
            " bytes; Rows x Columns x samples x bits x "
            "frames (",
            scan_.columns, "x", scan_.rows, "x", scan_.samples_per_pixel, "x", scan_.bits_allocated,
            "x", scan_.frames, ") allow ", scan_.expected_pixel_bytes));
      }
      if (inflate_ != nullptr) {
        inflate_->Cap(reader_.position() + h.length + limits_.max_header_bytes);
      }
      scan_.pixel_data_bytes = h.length;
      if (!reader_.Skip(h.length)) return Truncated(&h);
      return absl::OkStatus();
    }
    // Encapsulated: an offset table item, fragments, a sequence delimiter.
    if (encoding == Encoding::kImplicitLittle) {
      return Bad("encapsulated PixelData in Implicit VR Little Endian");
    }
    scan_.encapsulated = true;
    bool offset_table = true;
    while (true) {
      ElementHeader item;
      RETURN_IF_ERROR(ReadHeader(encoding, item));
      if (item.group == 0xFFFE && item.element == 0xE0DD) break;
      if (item.group != 0xFFFE || item.element != 0xE000 || item.length == kUndefinedLength) {
        return Bad(absl::StrCat("encapsulated PixelData holds ", TagName(item.group, item.element),
                                " where a fragment item was expected"));
      }
      if (offset_table) {
        offset_table = false;
        RETURN_IF_ERROR(Count(item.length));
        if (!reader_.Skip(item.length)) return Truncated(&item);
        continue;
      }
      ++scan_.fragments;
      scan_.pixel_data_bytes += item.length;
      if (rle_) {
        RETURN_IF_ERROR(RleHeader(item.length));
      } else if (jpeg_) {
        RETURN_IF_ERROR(JpegMarkers(item.length));
      } else if (!reader_.Skip(item.length)) {
        return Truncated(&item);
      }
    }
    if (scan_.fragments == 0) return Bad("encapsulated PixelData without fragments");
    return absl::OkStatus();
  }

  // PS3.5 G.3.1: 16 little-endian uint32: the segment count, then 15 offsets
  // from the fragment's start.
  absl::Status RleHeader(uint32_t fragment_length) {
    if (fragment_length < 64) {
      return Bad(absl::StrCat("RLE fragment ", scan_.fragments, " is ", fragment_length,
                              " bytes, shorter than its 64-byte header"));
    }
    const uint8_t* p = nullptr;
    if (!reader_.Next(64, &p)) return Truncated(nullptr);
    auto u32 = [p](int i) { return U32Le(p + 4 * i); };
    const uint32_t segments = u32(0);
    const std::string where = absl::StrCat("RLE fragment ", scan_.fragments, ": ");
    if (segments < 1 || segments > 15) {
      return Bad(absl::StrCat(where, segments, " segments (1 to 15 allowed)"));
    }
    const uint32_t needed =
        static_cast<uint32_t>(scan_.samples_per_pixel) * ((scan_.bits_allocated + 7) / 8);
    if (segments < needed) {
      return Bad(absl::StrCat(where, segments,
                              " segments, but SamplesPerPixel x bytes per sample "
                              "needs ",
                              needed));
    }
    uint32_t previous = 0;
    for (uint32_t i = 1; i <= segments; ++i) {
      const uint32_t offset = u32(static_cast<int>(i));
      if (offset % 2 != 0 || offset < 64 || offset <= previous || offset >= fragment_length) {
        return Bad(absl::StrCat(where, "segment ", i, " offset ", offset,
                                " is odd, out of order or outside the ", fragment_length,
                                "-byte fragment"));
      }
      previous = offset;
    }
    if (!reader_.Skip(fragment_length - 64)) return Truncated(nullptr);
    return absl::OkStatus();
  }

  // DCMTK 3.6.7 (DJCodecDecoder::scanJpegDataForBitDepth) walks the markers
  // of each JPEG fragment to find its precision, and on a TEM marker (FF01)
  // does not advance: the walk, and the image worker running it, never end.
  // This follows the same walk (marker by marker from the fragment's start,
  // until a start-of-frame, an unknown byte pair or the end) and refuses the
  // file where DCMTK's would stop advancing. FF01 is never valid there: it
  // cannot start a segment, and entropy-coded data stuffs 0xFF as FF00.
  absl::Status JpegMarkers(uint32_t fragment_length) {
    std::vector<uint8_t> window;  // bytes [window_start, window_start + size)
    uint64_t window_start = 0;
    uint64_t consumed = 0;  // bytes of the fragment read or skipped
    // Points *out at the 4 bytes at `offset` (offset + 4 <= fragment_length).
    const auto bytes_at = [&](uint64_t offset, const uint8_t** out) {
      if (offset < window_start || offset + 4 > window_start + window.size()) {
        if (offset >= consumed) {
          if (!reader_.Skip(offset - consumed)) return false;
          window.clear();
          window_start = consumed = offset;
        } else {
          window.erase(window.begin(), window.begin() + static_cast<long>(offset - window_start));
          window_start = offset;
        }
        const uint64_t want = std::min<uint64_t>(4096, fragment_length - consumed);
        const uint8_t* p = nullptr;
        if (!reader_.Next(want, &p)) return false;
        window.insert(window.end(), p, p + want);
        consumed += want;
      }
      *out = window.data() + (offset - window_start);
      return true;
    };
    uint64_t offset = 0;
    while (offset + 4 < fragment_length) {
      const uint8_t* p = nullptr;
      if (!bytes_at(offset, &p)) return Truncated(nullptr);
      const uint16_t marker = static_cast<uint16_t>((p[0] << 8) | p[1]);
      const bool frame_start = (marker >= 0xFFC0 && marker <= 0xFFCF) && marker != 0xFFC4 &&
                               marker != 0xFFC8 && marker != 0xFFCC;
      if (marker == 0xFF01) {
        return Bad(absl::StrCat("JPEG fragment ", scan_.fragments, ": a TEM marker (FF01) at byte ",
                                offset, " before the start of frame"));
      }
      if (frame_start) break;
      if (marker < 0xFFC0) {
        if (p[0] != 0xFF || p[1] < 3 || p[1] > 0xBF) break;  // DCMTK stops here
        offset += 2;                                         // a reserved marker
      } else if ((marker >= 0xFFD0 && marker <= 0xFFD9)) {
        offset += 2;  // RSTn, SOI, EOI
      } else if (marker == 0xFFFF) {
        offset += 1;  // a fill byte
      } else {
        offset += ((uint32_t{p[2]} << 8) | p[3]) + 2u;  // a segment and its length
      }
    }
    if (consumed < fragment_length && !reader_.Skip(fragment_length - consumed)) {
      return Truncated(nullptr);
    }
    return absl::OkStatus();
  }

  static uint32_t U32Le(const uint8_t* p) {
    return (uint32_t{p[3]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[1]} << 8) | p[0];
  }

  Reader& reader_;
  InflateReader* inflate_;
  const bool rle_;
  const bool jpeg_;  // a transfer syntax DCMTK decodes with dcmjpeg
  const DicomScanLimits& limits_;
  DicomScan& scan_;
  uint64_t header_bytes_ = 0;
};

// The File Meta Information (group 0002, always Explicit VR Little Endian):
// its end and the transfer syntax UID.
absl::Status ReadMeta(std::string_view bytes, size_t& end, std::string& syntax) {
  MemoryReader reader(bytes.substr(132));
  int64_t group_length = -1;
  while (true) {
    const uint64_t start = reader.position();
    const uint8_t* p = nullptr;
    if (!reader.Next(2, &p)) return Bad("file meta information cut off");
    if ((p[0] | (p[1] << 8)) != 0x0002) {
      end = 132 + start;
      break;
    }
    const uint8_t* q = nullptr;
    if (!reader.Next(4, &q)) return Bad("file meta information cut off");
    const uint16_t element = static_cast<uint16_t>(q[0] | (q[1] << 8));
    const char vr[3] = {static_cast<char>(q[2]), static_cast<char>(q[3]), 0};
    if (!IsKnownVr(vr)) return Bad("file meta element without a valid VR");
    uint32_t length = 0;
    if (IsLongVr(vr)) {
      if (!reader.Next(6, &q)) return Bad("file meta information cut off");
      length = (uint32_t{q[5]} << 24) | (uint32_t{q[4]} << 16) | (uint32_t{q[3]} << 8) | q[2];
    } else {
      if (!reader.Next(2, &q)) return Bad("file meta information cut off");
      length = q[0] | (q[1] << 8);
    }
    if (length == kUndefinedLength) return Bad("undefined length in the file meta information");
    if (length > 4096 && element != 0x0001) {
      return Bad("file meta element over 4 KiB");
    }
    const uint8_t* value = nullptr;
    if (!reader.Next(length, &value)) return Bad("file meta information cut off");
    if (element == 0x0000 && length == 4) {
      group_length = (int64_t{value[3]} << 24) | (value[2] << 16) | (value[1] << 8) | value[0];
      group_length += static_cast<int64_t>(reader.position());  // Relative to the meta's start.
    }
    if (element == 0x0010) {
      // DCMTK takes the transfer syntax only from a UI element; read any
      // other way the two parsers would disagree on the dataset's encoding.
      if (std::strcmp(vr, "UI") != 0) return Bad("TransferSyntaxUID is not of VR UI");
      syntax.assign(reinterpret_cast<const char*>(value), length);
      while (!syntax.empty() && (syntax.back() == '\0' || syntax.back() == ' ')) syntax.pop_back();
    }
  }
  if (group_length >= 0 && static_cast<size_t>(group_length) + 132 != end) {
    return Bad("FileMetaInformationGroupLength disagrees with the meta elements");
  }
  if (syntax.empty()) return Bad("no TransferSyntaxUID in the file meta information");
  // An unknown UID would make DCMTK guess the dataset's encoding from its
  // first bytes, which this walk cannot mirror.
  const bool uid_chars = std::all_of(syntax.begin(), syntax.end(),
                                     [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
  if (!uid_chars || DcmXfer(syntax.c_str()).getXfer() == EXS_Unknown) {
    return Bad(absl::StrCat("unknown transfer syntax '", absl::CHexEscape(syntax), "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DicomScan> ScanDicom(std::string_view bytes, const DicomScanLimits& limits) {
  if (bytes.size() < 132 || bytes.substr(128, 4) != "DICM") {
    return Bad("not a Part 10 file (no \"DICM\" at offset 128)");
  }
  DicomScan scan;
  size_t dataset_start = 0;
  RETURN_IF_ERROR(ReadMeta(bytes, dataset_start, scan.transfer_syntax_uid));
  const std::string& uid = scan.transfer_syntax_uid;
  Encoding encoding = Encoding::kExplicitLittle;
  if (uid == "1.2.840.10008.1.2") encoding = Encoding::kImplicitLittle;
  if (uid == "1.2.840.10008.1.2.2") encoding = Encoding::kExplicitBig;
  scan.deflated = uid == "1.2.840.10008.1.2.1.99";
  const bool rle = uid == "1.2.840.10008.1.2.5";
  // JPEG processes 1, 2/4, 6/8 (retired), 14 and 14 SV1: DCMTK's dcmjpeg.
  const bool jpeg = uid == "1.2.840.10008.1.2.4.50" || uid == "1.2.840.10008.1.2.4.51" ||
                    uid == "1.2.840.10008.1.2.4.53" || uid == "1.2.840.10008.1.2.4.55" ||
                    uid == "1.2.840.10008.1.2.4.57" || uid == "1.2.840.10008.1.2.4.70";
  const std::string_view dataset = bytes.substr(dataset_start);
  std::unique_ptr<Reader> reader;
  InflateReader* inflate = nullptr;
  if (scan.deflated) {
    auto inflating = std::make_unique<InflateReader>(
        dataset, static_cast<uint64_t>(limits.max_header_bytes) + limits.max_pixel_bytes);
    inflate = inflating.get();
    reader = std::move(inflating);
  } else {
    reader = std::make_unique<MemoryReader>(dataset);
  }
  Walker walker(*reader, inflate, rle, jpeg, limits, scan);
  RETURN_IF_ERROR(walker.WalkItem(encoding, 0, kNoEnd, /*until_delimiter=*/false));
  scan.dataset_bytes = static_cast<int64_t>(reader->position());
  return scan;
}

}  // namespace rectifier::imaging
