#include "server/imaging/dicom.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrleerg.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmjpeg/djencode.h>
#include <dcmtk/dcmjpls/djencode.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <zlib.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace rectifier::imaging {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Serializes `file` as a Part 10 file in `xfer`, in memory (no temp files:
// ctest runs test cases of this binary in parallel processes).
std::string WriteToString(DcmFileFormat& file, E_TransferSyntax xfer) {
  file.validateMetaInfo(xfer);
  std::vector<char> buf(8 << 20);
  DcmOutputBufferStream out(buf.data(), buf.size());
  file.transferInit();
  const OFCondition written = file.write(out, xfer, EET_ExplicitLength, nullptr);
  file.transferEnd();
  EXPECT_TRUE(written.good()) << written.text();
  out.flush();  // Drains the zlib filter of deflated syntaxes into `buf`.
  void* data = nullptr;
  offile_off_t length = 0;
  out.flushBuffer(data, length);
  return std::string(static_cast<char*>(data), static_cast<size_t>(length));
}

struct Scan {
  int rows = 16;
  int columns = 20;
  int frames = 1;
  int bits = 16;  // 8 or 16 allocated; stored = bits.
  bool is_signed = false;
  std::string photometric = "MONOCHROME2";
  std::string slope = "1";
  std::string intercept = "0";
  std::string window_center;  // Empty: none in the file.
  std::string window_width;
  // Stored value of frame f, pixel i.
  int (*value)(int f, int i) = [](int f, int i) { return f * 1000 + i * 3; };
};

// Writes `scan` with DCMTK in `xfer` (compressing with DCMTK's encoders) and
// returns the Part 10 file bytes.
std::string MakeDicom(const Scan& scan, E_TransferSyntax xfer) {
  static const bool registered = [] {
    DJEncoderRegistration::registerCodecs();
    DJLSEncoderRegistration::registerCodecs();
    DcmRLEEncoderRegistration::registerCodecs();
    return true;
  }();
  (void)registered;
  DcmFileFormat file;
  DcmDataset* ds = file.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.826.0.1.3680043.2.1143.1");
  ds->putAndInsertString(DCM_StudyInstanceUID, "1.2.826.0.1.3680043.2.1143.2");
  ds->putAndInsertString(DCM_SeriesInstanceUID, "1.2.826.0.1.3680043.2.1143.3");
  ds->putAndInsertString(DCM_Modality, "CT");
  ds->putAndInsertUint16(DCM_Rows, static_cast<Uint16>(scan.rows));
  ds->putAndInsertUint16(DCM_Columns, static_cast<Uint16>(scan.columns));
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, scan.photometric.c_str());
  ds->putAndInsertUint16(DCM_BitsAllocated, static_cast<Uint16>(scan.bits));
  ds->putAndInsertUint16(DCM_BitsStored, static_cast<Uint16>(scan.bits));
  ds->putAndInsertUint16(DCM_HighBit, static_cast<Uint16>(scan.bits - 1));
  ds->putAndInsertUint16(DCM_PixelRepresentation, scan.is_signed ? 1 : 0);
  ds->putAndInsertString(DCM_RescaleSlope, scan.slope.c_str());
  ds->putAndInsertString(DCM_RescaleIntercept, scan.intercept.c_str());
  if (!scan.window_center.empty()) {
    ds->putAndInsertString(DCM_WindowCenter, scan.window_center.c_str());
    ds->putAndInsertString(DCM_WindowWidth, scan.window_width.c_str());
  }
  if (scan.frames > 1)
    ds->putAndInsertString(DCM_NumberOfFrames, std::to_string(scan.frames).c_str());
  const int n = scan.rows * scan.columns;
  if (scan.bits == 16) {
    std::vector<Uint16> pixels(static_cast<size_t>(n) * scan.frames);
    for (int f = 0; f < scan.frames; ++f) {
      for (int i = 0; i < n; ++i) pixels[f * n + i] = static_cast<Uint16>(scan.value(f, i));
    }
    ds->putAndInsertUint16Array(DCM_PixelData, pixels.data(), pixels.size());
  } else {
    std::vector<Uint8> pixels(static_cast<size_t>(n) * scan.frames);
    for (int f = 0; f < scan.frames; ++f) {
      for (int i = 0; i < n; ++i) pixels[f * n + i] = static_cast<Uint8>(scan.value(f, i));
    }
    ds->putAndInsertUint8Array(DCM_PixelData, pixels.data(), pixels.size());
  }
  EXPECT_TRUE(ds->chooseRepresentation(xfer, nullptr).good()) << DcmXfer(xfer).getXferName();
  EXPECT_TRUE(ds->canWriteXfer(xfer)) << DcmXfer(xfer).getXferName();
  return WriteToString(file, xfer);
}

// PS3.3 C.11.2.1.2.1 linear VOI function, output 0..ymax.
double DicomWindow(double x, double c, double w, double ymax) {
  if (x <= c - 0.5 - (w - 1) / 2) return 0;
  if (x > c - 0.5 + (w - 1) / 2) return ymax;
  return ((x - (c - 0.5)) / (w - 1) + 0.5) * ymax;
}

TEST(DicomTest, RescaleToHounsfieldAndCallerWindow) {
  Scan scan;
  scan.intercept = "-1024";
  scan.slope = "1";
  scan.value = [](int, int i) { return 1024 - 300 + i * 2; };  // HU -300 + 2i
  const std::string bytes = MakeDicom(scan, EXS_LittleEndianExplicit);
  DicomOptions o;
  o.window = WindowSource::kCaller;
  o.window_center = 0;
  o.window_width = 400;
  o.output_bits = 8;
  auto r = DecodeDicom(bytes, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->report.rows, 16);
  EXPECT_EQ(r->report.columns, 20);
  EXPECT_EQ(r->report.modality, "CT");
  EXPECT_EQ(r->report.rescale_intercept, -1024);
  EXPECT_EQ(r->report.window_source, WindowSource::kCaller);
  EXPECT_EQ(r->report.window_center, 0);
  EXPECT_EQ(r->report.window_width, 400);
  ASSERT_EQ(r->image.type(), CV_8UC1);
  for (int i = 0; i < 16 * 20; ++i) {
    const double hu = -300 + i * 2;
    EXPECT_NEAR(r->image.at<uchar>(i / 20, i % 20), DicomWindow(hu, 0, 400, 255), 1.0) << hu;
  }
}

TEST(DicomTest, SlopeIsApplied) {
  Scan scan;
  scan.slope = "2";
  scan.intercept = "-100";
  scan.value = [](int, int i) { return i; };  // Modality value 2i - 100.
  DicomOptions o;
  o.window = WindowSource::kCaller;
  o.window_center = 100;
  o.window_width = 201;  // Modality 0..200 -> i in 50..150.
  o.output_bits = 16;
  auto r = DecodeDicom(MakeDicom(scan, EXS_LittleEndianImplicit), o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->image.type(), CV_16UC1);
  for (int i : {0, 49, 50, 100, 150, 200}) {
    EXPECT_NEAR(r->image.at<uint16_t>(i / 20, i % 20), DicomWindow(2.0 * i - 100, 100, 201, 65535),
                2.0)
        << i;
  }
}

TEST(DicomTest, FileWindowAndMinMaxFallback) {
  Scan scan;
  scan.window_center = "40";
  scan.window_width = "400";
  auto r = DecodeDicom(MakeDicom(scan, EXS_LittleEndianExplicit), DicomOptions());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->report.window_source, WindowSource::kFile);
  EXPECT_EQ(r->report.window_center, 40);
  EXPECT_EQ(r->report.window_width, 400);

  Scan plain;  // No window in the file: min-max over 0..957.
  DicomOptions o;
  o.output_bits = 8;
  r = DecodeDicom(MakeDicom(plain, EXS_LittleEndianExplicit), o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->report.window_source, WindowSource::kMinMax);
  double lo = 0, hi = 0;
  cv::minMaxLoc(r->image, &lo, &hi);
  EXPECT_EQ(lo, 0);
  EXPECT_EQ(hi, 255);
}

TEST(DicomTest, MonochromeOneIsInverted) {
  Scan scan;
  DicomOptions o;
  o.window = WindowSource::kMinMax;
  o.output_bits = 8;
  auto m2 = DecodeDicom(MakeDicom(scan, EXS_LittleEndianExplicit), o);
  scan.photometric = "MONOCHROME1";
  auto m1 = DecodeDicom(MakeDicom(scan, EXS_LittleEndianExplicit), o);
  ASSERT_TRUE(m1.ok() && m2.ok());
  EXPECT_EQ(m1->report.photometric, "MONOCHROME1");
  EXPECT_EQ(m1->image.at<uchar>(0, 0), 255);  // Lowest value shows bright.
  for (int i = 0; i < 16 * 20; ++i) {
    EXPECT_NEAR(m1->image.at<uchar>(i / 20, i % 20), 255 - m2->image.at<uchar>(i / 20, i % 20), 1);
  }
}

struct XferCase {
  E_TransferSyntax xfer;
  int bits;
  bool is_signed;
};

// Deterministic parameter text for test listings (the struct has padding).
void PrintTo(const XferCase& c, std::ostream* os) {
  *os << DcmXfer(c.xfer).getXferID() << " " << c.bits << (c.is_signed ? "s" : "u");
}

class DicomXferTest : public ::testing::TestWithParam<XferCase> {};

// Lossless syntaxes reproduce the uncompressed rendering exactly.
TEST_P(DicomXferTest, LosslessMatchesUncompressed) {
  const XferCase& c = GetParam();
  Scan scan;
  scan.bits = c.bits;
  scan.is_signed = c.is_signed;
  if (c.bits == 8) scan.value = [](int, int i) { return (i * 7) % 256; };
  if (c.is_signed) scan.value = [](int, int i) { return (i * 37) % 3000 - 1500; };
  DicomOptions o;
  o.window = WindowSource::kMinMax;
  auto reference = DecodeDicom(MakeDicom(scan, EXS_LittleEndianExplicit), o);
  ASSERT_TRUE(reference.ok()) << reference.status();
  auto r = DecodeDicom(MakeDicom(scan, c.xfer), o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->report.transfer_syntax_uid, DcmXfer(c.xfer).getXferID());
  EXPECT_EQ(r->report.bits_stored, c.bits);
  EXPECT_EQ(r->report.is_signed, c.is_signed);
  EXPECT_EQ(cv::norm(r->image, reference->image, cv::NORM_INF), 0.0);
}

INSTANTIATE_TEST_SUITE_P(
    Syntaxes, DicomXferTest,
    ::testing::Values(
        XferCase{EXS_LittleEndianImplicit, 16, false},
        XferCase{EXS_DeflatedLittleEndianExplicit, 16, false},
        XferCase{EXS_BigEndianExplicit, 16, false}, XferCase{EXS_BigEndianExplicit, 16, true},
        XferCase{EXS_RLELossless, 16, false}, XferCase{EXS_RLELossless, 8, false},
        XferCase{EXS_RLELossless, 16, true}, XferCase{EXS_JPEGProcess14SV1, 16, false},
        XferCase{EXS_JPEGProcess14SV1, 8, false}, XferCase{EXS_JPEGLSLossless, 16, false},
        XferCase{EXS_JPEGLSLossless, 8, false}, XferCase{EXS_JPEGLSLossless, 16, true}),
    [](const ::testing::TestParamInfo<XferCase>& info) {
      std::string name = DcmXfer(info.param.xfer).getXferName();
      name += "_" + std::to_string(info.param.bits) + (info.param.is_signed ? "s" : "u");
      for (char& ch : name) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return name;
    });

TEST(DicomTest, JpegBaselineIsClose) {
  Scan scan;
  scan.bits = 8;
  scan.value = [](int, int i) { return 60 + (i % 20) * 4; };
  DicomOptions o;
  o.window = WindowSource::kCaller;
  o.window_center = 127.5;
  o.window_width = 256;
  o.output_bits = 8;
  auto reference = DecodeDicom(MakeDicom(scan, EXS_LittleEndianExplicit), o);
  auto r = DecodeDicom(MakeDicom(scan, EXS_JPEGProcess1), o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_EQ(r->report.transfer_syntax_uid, UID_JPEGProcess1TransferSyntax);
  EXPECT_LE(cv::norm(r->image, reference->image, cv::NORM_INF), 8.0);
}

TEST(DicomTest, MultiFrameChoosesFrame) {
  Scan scan;
  scan.frames = 3;
  scan.value = [](int f, int i) { return f * 1000 + (i % 10); };
  DicomOptions o;
  o.window = WindowSource::kCaller;
  o.window_center = 1500;
  o.window_width = 3001;
  for (E_TransferSyntax xfer : {EXS_LittleEndianExplicit, EXS_RLELossless, EXS_JPEGLSLossless}) {
    const std::string bytes = MakeDicom(scan, xfer);
    for (int f = 0; f < 3; ++f) {
      o.frame = f;
      auto r = DecodeDicom(bytes, o);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->report.frame_count, 3);
      EXPECT_EQ(r->report.frame, f);
      EXPECT_NEAR(r->image.at<uint16_t>(0, 5), DicomWindow(f * 1000 + 5, 1500, 3001, 65535), 2.0);
    }
    o.frame = 3;
    EXPECT_EQ(DecodeDicom(bytes, o).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

// RGB (interleaved), uncompressed and RLE: output is BGR like DecodeImage.
TEST(DicomTest, RgbIsReturnedAsBgr) {
  static const bool registered = [] {
    DcmRLEEncoderRegistration::registerCodecs();
    return true;
  }();
  (void)registered;
  for (E_TransferSyntax xfer : {EXS_LittleEndianExplicit, EXS_RLELossless}) {
    DcmFileFormat file;
    DcmDataset* ds = file.getDataset();
    ds->putAndInsertString(DCM_SOPClassUID, UID_SecondaryCaptureImageStorage);
    ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.5");
    ds->putAndInsertUint16(DCM_Rows, 4);
    ds->putAndInsertUint16(DCM_Columns, 6);
    ds->putAndInsertUint16(DCM_SamplesPerPixel, 3);
    ds->putAndInsertUint16(DCM_PlanarConfiguration, 0);
    ds->putAndInsertString(DCM_PhotometricInterpretation, "RGB");
    ds->putAndInsertUint16(DCM_BitsAllocated, 8);
    ds->putAndInsertUint16(DCM_BitsStored, 8);
    ds->putAndInsertUint16(DCM_HighBit, 7);
    ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
    std::vector<Uint8> rgb(4 * 6 * 3);
    for (size_t i = 0; i < rgb.size(); i += 3) {
      rgb[i] = 200;      // R
      rgb[i + 1] = 100;  // G
      rgb[i + 2] = 10;   // B
    }
    ds->putAndInsertUint8Array(DCM_PixelData, rgb.data(), rgb.size());
    ASSERT_TRUE(ds->chooseRepresentation(xfer, nullptr).good());
    DicomOptions o;
    o.output_bits = 8;
    auto r = DecodeDicom(WriteToString(file, xfer), o);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->image.type(), CV_8UC3);
    EXPECT_EQ(r->image.at<cv::Vec3b>(2, 3), cv::Vec3b(10, 100, 200));
    EXPECT_EQ(r->report.photometric, "RGB");
  }
}

TEST(DicomTest, Jpeg2000IsUnimplementedNamingTheSyntax) {
  DcmFileFormat file;
  DcmDataset* ds = file.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4");
  ds->putAndInsertUint16(DCM_Rows, 8);
  ds->putAndInsertUint16(DCM_Columns, 8);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_BitsAllocated, 8);
  ds->putAndInsertUint16(DCM_BitsStored, 8);
  ds->putAndInsertUint16(DCM_HighBit, 7);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  auto* pixel_data = new DcmPixelData(DCM_PixelData);
  auto* sequence = new DcmPixelSequence(DCM_PixelSequenceTag);
  sequence->insert(new DcmPixelItem(DCM_PixelItemTag));  // Empty offset table.
  auto* fragment = new DcmPixelItem(DCM_PixelItemTag);
  const Uint8 junk[8] = {0xFF, 0x4F, 0xFF, 0x51, 0, 0, 0, 0};
  fragment->putUint8Array(junk, sizeof(junk));
  sequence->insert(fragment);
  pixel_data->putOriginalRepresentation(EXS_JPEG2000LosslessOnly, nullptr, sequence);
  ds->insert(pixel_data);
  auto r = DecodeDicom(WriteToString(file, EXS_JPEG2000LosslessOnly), DicomOptions());
  ASSERT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(r.status().message(), HasSubstr("JPEG 2000"));
  EXPECT_THAT(r.status().message(), HasSubstr("1.2.840.10008.1.2.4.90"));
}

TEST(DicomTest, HostileInputIsInvalid) {
  EXPECT_EQ(DecodeDicom("", DicomOptions()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(DecodeDicom(std::string(1000, '\0'), DicomOptions()).ok());
  std::mt19937 rng(9);
  for (int i = 0; i < 50; ++i) {
    std::string bytes(200 + rng() % 2000, '\0');
    for (char& b : bytes) b = static_cast<char>(rng());
    EXPECT_FALSE(DecodeDicom(bytes, DicomOptions()).ok());
  }
  // A valid file cut short.
  const std::string good = MakeDicom(Scan(), EXS_LittleEndianExplicit);
  EXPECT_TRUE(LooksLikeDicom(good));
  EXPECT_FALSE(DecodeDicom(good.substr(0, good.size() / 2), DicomOptions()).ok());
  // PixelData claiming ~2 GiB: refused without allocating it.
  std::string huge = good;
  const size_t at = huge.find(std::string("\xE0\x7F\x10\x00OW", 6));
  ASSERT_NE(at, std::string::npos);
  huge.replace(at + 8, 4, std::string("\xF0\xFF\xFF\x7F", 4));
  EXPECT_EQ(DecodeDicom(huge, DicomOptions()).status().code(), absl::StatusCode::kInvalidArgument);
  DicomOptions small;
  small.max_pixels = 100;
  EXPECT_THAT(DecodeDicom(good, small).status().message(), HasSubstr("20x16"));
}

// One Explicit VR Little Endian element.
std::string Element(uint16_t group, uint16_t element, const char* vr, const std::string& value,
                    int64_t declared = -1) {
  std::string s;
  auto u16 = [&](uint32_t v) { s += static_cast<char>(v & 0xFF), s += static_cast<char>(v >> 8); };
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
  };
  u16(group);
  u16(element);
  s += vr;
  const uint32_t length =
      declared >= 0 ? static_cast<uint32_t>(declared) : static_cast<uint32_t>(value.size());
  const std::string v(vr);
  if (v == "OB" || v == "OW" || v == "UN" || v == "SQ" || v == "UT") {
    u16(0);
    u32(length);
  } else {
    u16(length);
  }
  return s + value;
}

std::string U16(uint16_t v) {
  return std::string{static_cast<char>(v & 0xFF), static_cast<char>(v >> 8)};
}

// Preamble, "DICM" and a File Meta Information group for `syntax`.
std::string PartTenHeader(const std::string& syntax) {
  std::string meta =
      Element(0x0002, 0x0001, "OB", std::string("\0\1", 2)) +
      Element(0x0002, 0x0002, "UI", std::string("1.2.840.10008.5.1.4.1.1.2") + '\0') +
      Element(0x0002, 0x0003, "UI", "1.2.3.4") +
      Element(0x0002, 0x0010, "UI", syntax.size() % 2 ? syntax + '\0' : syntax);
  std::string length(4, '\0');
  for (int i = 0; i < 4; ++i) length[i] = static_cast<char>((meta.size() >> (8 * i)) & 0xFF);
  return std::string(128, '\0') + "DICM" + Element(0x0002, 0x0000, "UL", length) + meta;
}

// Raw deflate (what the Deflated syntax holds) of `header` followed by
// `zeros` zero bytes, compressed as a stream so the zeros never exist whole.
std::string DeflateWithZeros(const std::string& header, int64_t zeros) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out;
  std::vector<unsigned char> buffer(1 << 16);
  const std::string chunk(1 << 20, '\0');
  auto pump = [&](const std::string& data, int flush) {
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(data.size());
    do {
      z.next_out = buffer.data();
      z.avail_out = static_cast<uInt>(buffer.size());
      deflate(&z, flush);
      out.append(reinterpret_cast<char*>(buffer.data()), buffer.size() - z.avail_out);
    } while (z.avail_out == 0);
  };
  pump(header, Z_NO_FLUSH);
  for (int64_t left = zeros; left > 0; left -= static_cast<int64_t>(chunk.size())) {
    pump(left >= static_cast<int64_t>(chunk.size()) ? chunk : chunk.substr(0, left), Z_NO_FLUSH);
  }
  pump(std::string(), Z_FINISH);
  deflateEnd(&z);
  return out;
}

int64_t PeakRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return int64_t{usage.ru_maxrss} * 1024;
}

// A 1 MB deflated file whose PixelData declares 1 GiB: DCMTK used to inflate
// and keep all of it (+1 GB). Refused now from the header, before inflating.
TEST(DicomHardeningTest, DeflatedPixelDataBeyondItsGeometryIsRefused) {
  constexpr int64_t kDeclared = int64_t{1} << 30;
  const std::string dataset =
      Element(0x0008, 0x0060, "CS", "CT") + Element(0x0028, 0x0002, "US", U16(1)) +
      Element(0x0028, 0x0004, "CS", "MONOCHROME2 ") + Element(0x0028, 0x0010, "US", U16(64)) +
      Element(0x0028, 0x0011, "US", U16(64)) + Element(0x0028, 0x0100, "US", U16(16)) +
      Element(0x0028, 0x0101, "US", U16(16)) + Element(0x0028, 0x0102, "US", U16(15)) +
      Element(0x0028, 0x0103, "US", U16(0)) + Element(0x7FE0, 0x0010, "OW", "", kDeclared);
  const std::string file =
      PartTenHeader("1.2.840.10008.1.2.1.99") + DeflateWithZeros(dataset, kDeclared);
  EXPECT_LT(file.size(), 2u << 20);
  const int64_t before = PeakRssBytes();
  auto r = DecodeDicom(file, DicomOptions());
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("PixelData declares 1073741824 bytes"));
  EXPECT_LT(PeakRssBytes() - before, int64_t{64} << 20);

  // The same lie in a file that inflates past everything its header allows
  // (many large private elements): refused by the inflation cap.
  DicomOptions small;
  small.max_pixel_bytes = 1 << 20;
  const std::string many =
      Element(0x0009, 0x0010, "LO", "ACME") + Element(0x0009, 0x1000, "OB", "", int64_t{64} << 20);
  const std::string bomb =
      PartTenHeader("1.2.840.10008.1.2.1.99") + DeflateWithZeros(many, int64_t{64} << 20);
  auto capped = DecodeDicom(bomb, small);
  ASSERT_EQ(capped.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(PeakRssBytes() - before, int64_t{64} << 20);
}

// The high byte of the first RLE segment offset set (0x40 -> 0xD7000040):
// DCMTK's RLE decoder read far outside the fragment and crashed the server.
TEST(DicomHardeningTest, RleSegmentOffsetOutsideTheFragmentIsRefused) {
  const std::string good = MakeDicom(Scan(), EXS_RLELossless);
  ASSERT_TRUE(DecodeDicom(good, DicomOptions()).ok());
  // 16-bit monochrome: 2 segments, the first at offset 64.
  const std::string table("\x02\x00\x00\x00\x40\x00\x00\x00", 8);
  const size_t at = good.find(table);
  ASSERT_NE(at, std::string::npos);
  std::string bad = good;
  bad[at + 7] = static_cast<char>(0xD7);
  auto r = DecodeDicom(bad, DicomOptions());
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("RLE fragment"));
  // Too few segments for 16-bit samples, and a count beyond 15.
  std::string one = good;
  one[at] = 1;
  EXPECT_THAT(DecodeDicom(one, DicomOptions()).status().message(), HasSubstr("segments"));
  std::string many = good;
  many[at] = 16;
  EXPECT_THAT(DecodeDicom(many, DicomOptions()).status().message(), HasSubstr("1 to 15"));
  // An odd offset.
  std::string odd = good;
  odd[at + 8] = static_cast<char>(odd[at + 8] | 1);
  EXPECT_EQ(DecodeDicom(odd, DicomOptions()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DicomHardeningTest, DeepNestingIsRefused) {
  std::string nested = Element(0x0008, 0x0060, "CS", "CT");
  std::string inner;
  for (int i = 0; i < 40; ++i) {
    // An undefined-length sequence holding one undefined-length item.
    std::string outer = Element(0x0040, 0x0275, "SQ", "", 0xFFFFFFFF);
    outer.append("\xFE\xFF\x00\xE0\xFF\xFF\xFF\xFF", 8);
    outer.append(inner);
    outer.append("\xFE\xFF\x0D\xE0\x00\x00\x00\x00", 8);
    outer.append("\xFE\xFF\xDD\xE0\x00\x00\x00\x00", 8);
    inner = std::move(outer);
  }
  const std::string file = PartTenHeader("1.2.840.10008.1.2.1") + nested + inner;
  auto r = DecodeDicom(file, DicomOptions());
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("nested deeper"));
}

// An icon image sequence holding encapsulated (undefined-length) pixel data
// of its own, as JPEG-compressed thumbnails are stored, is walked through.
TEST(DicomHardeningTest, EncapsulatedIconInASequenceIsAccepted) {
  const std::string good = MakeDicom(Scan(), EXS_LittleEndianExplicit);
  const std::string icon =
      Element(0x0088, 0x0200, "SQ", "", 0xFFFFFFFF) +
      std::string("\xFE\xFF\x00\xE0\xFF\xFF\xFF\xFF", 8) +
      Element(0x7FE0, 0x0010, "OB", "", 0xFFFFFFFF) +
      std::string("\xFE\xFF\x00\xE0\x00\x00\x00\x00", 8) +                   // Offset table.
      std::string("\xFE\xFF\x00\xE0\x04\x00\x00\x00\x01\x02\x03\x04", 12) +  // Fragment.
      std::string("\xFE\xFF\xDD\xE0\x00\x00\x00\x00", 8) +
      std::string("\xFE\xFF\x0D\xE0\x00\x00\x00\x00", 8) +
      std::string("\xFE\xFF\xDD\xE0\x00\x00\x00\x00", 8);
  // Before Rows (0028,0010): the sequence's tag (0088,0200) sorts after it,
  // but the scan, like DCMTK, takes elements in file order.
  const size_t at = good.find(std::string("\x28\x00\x10\x00", 4));
  ASSERT_NE(at, std::string::npos);
  std::string with_icon = good;
  with_icon.insert(at, icon);
  DicomScanLimits limits;
  auto scan = ScanDicom(with_icon, limits);
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->rows, 16);
  EXPECT_FALSE(scan->encapsulated);  // The image's own pixel data is native.
}

// The scan and DCMTK must read the dataset the same way: a transfer syntax
// DCMTK does not know (it would guess the encoding from the data) or one
// stored with a VR other than UI (DCMTK ignores it) is refused. Both let a
// 300-byte file make DCMTK allocate gigabytes (found by fuzz/dicom).
TEST(DicomHardeningTest, TransferSyntaxMustBeAKnownUid) {
  const std::string dataset = Element(0x0028, 0x0010, "US", U16(4));
  auto garbled = DecodeDicom(
      PartTenHeader(std::string("\0\0\0\0\0\x01\x02.10008.1.2.1", 19)) + dataset, DicomOptions());
  ASSERT_EQ(garbled.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(garbled.status().message(), HasSubstr("unknown transfer syntax"));
  std::string as_st = PartTenHeader("1.2.840.10008.1.2.1.99");
  const size_t at = as_st.find(std::string("\x02\x00\x10\x00UI", 6));
  ASSERT_NE(at, std::string::npos);
  as_st.replace(at + 4, 2, "ST");
  auto wrong_vr = DecodeDicom(as_st + dataset, DicomOptions());
  ASSERT_EQ(wrong_vr.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong_vr.status().message(), HasSubstr("not of VR UI"));
}

// DCMTK 3.6.7 scans a JPEG fragment's markers for its precision and does not
// advance past a TEM marker (FF01): the decode never returned (found by
// fuzzing; the file is the fuzzer's, kept in the corpus). It is refused first.
TEST(DicomHardeningTest, JpegTemMarkerThatHangsDcmtkIsRefused) {
  std::ifstream file("fuzz/corpus/dicom/found_jpeg_tem_marker_hang.dcm", std::ios::binary);
  ASSERT_TRUE(file.good());
  const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  auto decoded = DecodeDicom(bytes, DicomOptions());
  ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decoded.status().message(), HasSubstr("TEM marker (FF01) at byte 121"));
  // The same fragment without the TEM marker decodes (or fails) normally:
  // the check refuses only what DCMTK cannot walk.
  std::string fixed = bytes;
  const size_t at = fixed.find(std::string("\xff\x01\x00\x01\x02", 5));
  ASSERT_NE(at, std::string::npos);
  fixed[at + 1] = '\xd0';  // RST0: DCMTK steps over it
  auto walked = DecodeDicom(fixed, DicomOptions());
  if (!walked.ok()) {
    EXPECT_THAT(walked.status().message(), Not(HasSubstr("TEM marker")));
  }
}

// A deflated dataset whose last deflate symbol is only complete with the
// zero byte DCMTK feeds zlib after the data: the scan read 642 bytes and
// stopped cleanly, DCMTK read on into an element with a non-standard VR and
// a 1.1 GB length, and allocated it (found by fuzzing; the file is the
// fuzzer's). The scan now reads what DCMTK reads and refuses it first.
TEST(DicomHardeningTest, DeflateTailThatDcmtkCompletesIsScannedAsDcmtkReadsIt) {
  std::ifstream file("fuzz/corpus/dicom/found_deflate_pad_byte_completes_huge_element.dcm",
                     std::ios::binary);
  ASSERT_TRUE(file.good());
  const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  auto decoded = DecodeDicom(bytes, DicomOptions());
  ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decoded.status().message(), HasSubstr("element (4343,4343) has no valid VR"));
}

// Some converters write header elements with VR UN; they are read through
// the data dictionary (Modality "RTDOSE", not "82\84\...").
TEST(DicomHardeningTest, HeaderElementsWithVrUnAreDecodedThroughTheDictionary) {
  const std::string good = MakeDicom(Scan(), EXS_LittleEndianExplicit);
  const std::string cs(
      "\x08\x00\x60\x00"
      "CS\x02\x00"
      "CT",
      10);
  const size_t at = good.find(cs);
  ASSERT_NE(at, std::string::npos);
  std::string un = good;
  un.replace(at, cs.size(),
             std::string("\x08\x00\x60\x00"
                         "UN\x00\x00\x02\x00\x00\x00"
                         "CT",
                         14));
  auto r = DecodeDicom(un, DicomOptions());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->report.modality, "CT");
}

// Concurrent decoding of compressed DICOM from several threads gives the
// same pixels as one thread (codec registry and DicomImage are per call).
TEST(DicomTest, ConcurrentDecodesAgree) {
  const std::string rle = MakeDicom(Scan(), EXS_RLELossless);
  const std::string jls = MakeDicom(Scan(), EXS_JPEGLSLossless);
  DicomOptions o;
  o.window = WindowSource::kMinMax;
  auto reference = DecodeDicom(rle, o);
  ASSERT_TRUE(reference.ok()) << reference.status();
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto r = DecodeDicom((t + i) % 2 == 0 ? rle : jls, o);
        if (!r.ok() || cv::norm(r->image, reference->image, cv::NORM_INF) != 0.0) {
          ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

// DCMTK's own warnings go to spdlog (debug), not to stderr.
TEST(DicomTest, DcmtkLogIsRoutedToSpdlog) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>("capture", sink);
  logger->set_level(spdlog::level::debug);
  spdlog::set_default_logger(logger);
  // PixelData 100 bytes shorter than Rows x Columns need: structurally
  // sound (so it reaches DCMTK), and DCMTK warns about the missing pixels.
  std::string good = MakeDicom(Scan(), EXS_LittleEndianExplicit);
  const size_t at = good.find(std::string("\xE0\x7F\x10\x00OW", 6));
  ASSERT_NE(at, std::string::npos);
  const uint32_t length = static_cast<uint32_t>(good.size() - at - 12) - 100;
  for (int i = 0; i < 4; ++i) good[at + 8 + i] = static_cast<char>((length >> (8 * i)) & 0xFF);
  (void)DecodeDicom(good.substr(0, good.size() - 100), DicomOptions());
  spdlog::set_default_logger(previous);
  bool found = false;
  for (const std::string& line : sink->last_formatted()) {
    if (line.find("dcmtk") != std::string::npos) found = true;
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace rectifier::imaging
