#include "server/imaging/dicom.h"

#include <dcmtk/config/osconfig.h>  // Must come first among DCMTK headers.
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcvr.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmimage/diregist.h>  // Colour (RGB, YBR) support for DicomImage.
#include <dcmtk/dcmimgle/dcmimage.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/appender.h>
#include <dcmtk/oflog/oflog.h>
#include <dcmtk/oflog/spi/logevent.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <opencv2/imgproc.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/imaging/dicom_scan.h"

namespace rectifier::imaging {
namespace {

// Routes DCMTK's logger (oflog) into spdlog at debug level: its messages are
// about malformed client files, i.e. per request, and the caller already gets
// the failure as a Status.
class SpdlogAppender : public dcmtk::log4cplus::Appender {
 public:
  ~SpdlogAppender() override { destructorImpl(); }
  void close() override { closed = true; }

 protected:
  void append(const dcmtk::log4cplus::spi::InternalLoggingEvent& event) override {
    spdlog::debug("dcmtk {}: {}", event.getLoggerName().c_str(), event.getMessage().c_str());
  }
};

// DCMTK's codec registry is global and not safe to mutate concurrently, so
// registration happens once; the codecs stay registered for the process.
void InitDcmtkOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Header elements some converters write with VR UN (e.g. Modality) are
    // read with their dictionary VR, not as raw bytes.
    dcmEnableUnknownVRConversion.set(OFTrue);
    OFLog::configure(OFLogger::WARN_LOG_LEVEL);  // Replaces the default setup.
    dcmtk::log4cplus::Logger root = dcmtk::log4cplus::Logger::getRoot();
    root.removeAllAppenders();  // The console (stderr) appender.
    root.addAppender(dcmtk::log4cplus::SharedAppenderPtr(new SpdlogAppender()));
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
  });
}

bool SupportedXfer(E_TransferSyntax xfer) {
  switch (xfer) {
    case EXS_LittleEndianImplicit:
    case EXS_LittleEndianExplicit:
    case EXS_BigEndianExplicit:
    case EXS_BigEndianImplicit:
    case EXS_DeflatedLittleEndianExplicit:
    case EXS_RLELossless:
    case EXS_JPEGProcess1:
    case EXS_JPEGProcess2_4:
    case EXS_JPEGProcess14:
    case EXS_JPEGProcess14SV1:
    case EXS_JPEGLSLossless:
    case EXS_JPEGLSLossy:
      return true;
    default:
      return false;
  }
}

std::string GetString(DcmDataset* ds, const DcmTagKey& key) {
  OFString value;
  if (ds->findAndGetOFString(key, value).good()) return std::string(value.c_str());
  return std::string();
}

// The geometry and tags of the dataset, checked against the limits and the
// requested frame.
absl::Status ReadReport(DcmDataset* ds, const DicomOptions& options, DicomReport& report) {
  Uint16 rows = 0;
  Uint16 columns = 0;
  Uint16 u16 = 0;
  ds->findAndGetUint16(DCM_Rows, rows);
  ds->findAndGetUint16(DCM_Columns, columns);
  if (rows == 0 || columns == 0)
    return absl::InvalidArgumentError("DICOM: Rows or Columns missing");
  if (int64_t{rows} * columns > options.max_pixels) {
    return absl::InvalidArgumentError(absl::StrCat("DICOM image is ", columns, "x", rows,
                                                   ", over the limit of ", options.max_pixels,
                                                   " pixels"));
  }
  report.rows = rows;
  report.columns = columns;
  report.modality = GetString(ds, DCM_Modality);
  report.photometric = GetString(ds, DCM_PhotometricInterpretation);
  if (ds->findAndGetUint16(DCM_BitsAllocated, u16).good()) report.bits_allocated = u16;
  if (ds->findAndGetUint16(DCM_BitsStored, u16).good()) report.bits_stored = u16;
  if (ds->findAndGetUint16(DCM_PixelRepresentation, u16).good()) report.is_signed = u16 == 1;
  Float64 f64 = 0;
  if (ds->findAndGetFloat64(DCM_RescaleSlope, f64).good()) report.rescale_slope = f64;
  if (ds->findAndGetFloat64(DCM_RescaleIntercept, f64).good()) report.rescale_intercept = f64;
  Sint32 frames = 1;
  if (ds->findAndGetSint32(DCM_NumberOfFrames, frames).good() && frames > 0) {
    report.frame_count = frames;
  }
  if (options.frame < 0 || options.frame >= report.frame_count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DICOM: frame ", options.frame, " out of range (", report.frame_count, " frames)"));
  }
  report.frame = options.frame;
  return absl::OkStatus();
}

// The VOI window of a monochrome image: the file's first, min-max, or the
// caller's.
absl::Status ApplyWindow(DicomImage& image, const DicomOptions& options, DicomReport& report) {
  WindowSource source = options.window;
  if (source == WindowSource::kFile && image.getWindowCount() == 0) {
    source = WindowSource::kMinMax;
  }
  int ok = 0;
  switch (source) {
    case WindowSource::kFile:
      ok = image.setWindow(0);
      break;
    case WindowSource::kMinMax:
      ok = image.setMinMaxWindow(0);
      break;
    case WindowSource::kCaller:
      ok = image.setWindow(options.window_center, options.window_width);
      break;
  }
  if (!ok) return absl::InvalidArgumentError("DICOM: could not apply the VOI window");
  report.window_source = source;
  image.getWindow(report.window_center, report.window_width);
  return absl::OkStatus();
}

absl::StatusOr<DicomImageResult> DecodeDicomUnsafe(std::string_view bytes,
                                                   const DicomOptions& options) {
  DcmInputBufferStream stream;
  stream.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
  stream.setEos();
  DcmFileFormat file;
  file.transferInit();
  const OFCondition read = file.read(stream);
  file.transferEnd();
  if (read.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("could not parse DICOM: ", read.text()));
  }
  DcmDataset* ds = file.getDataset();
  const E_TransferSyntax xfer = ds->getOriginalXfer();
  const DcmXfer xfer_info(xfer);
  DicomImageResult result;
  DicomReport& report = result.report;
  report.transfer_syntax_uid = xfer_info.getXferID();
  report.transfer_syntax_name = xfer_info.getXferName();
  if (!SupportedXfer(xfer)) {
    if (xfer == EXS_Unknown) return absl::InvalidArgumentError("DICOM: unknown transfer syntax");
    return absl::UnimplementedError(
        absl::StrCat("DICOM transfer syntax not supported: ", report.transfer_syntax_name, " (",
                     report.transfer_syntax_uid, ")"));
  }
  if (!ds->tagExists(DCM_PixelData)) return absl::InvalidArgumentError("DICOM: no PixelData");

  RETURN_IF_ERROR(ReadReport(ds, options, report));

  // Partial access decodes only the chosen frame of a compressed multi-frame.
  DicomImage image(&file, xfer, CIF_UsePartialAccessToPixelData,
                   static_cast<unsigned long>(options.frame), 1);
  if (image.getStatus() != EIS_Normal) {
    return absl::InvalidArgumentError(
        absl::StrCat("DICOM pixel data: ", DicomImage::getString(image.getStatus())));
  }
  const bool mono = image.isMonochrome();
  if (mono) RETURN_IF_ERROR(ApplyWindow(image, options, report));

  const int bits = options.output_bits;
  const void* data = image.getOutputData(bits, 0, 0);
  if (data == nullptr) return absl::InvalidArgumentError("DICOM: could not render pixel data");
  const int channels = mono ? 1 : 3;
  const int type = CV_MAKETYPE(bits == 8 ? CV_8U : CV_16U, channels);
  const cv::Mat view(static_cast<int>(image.getHeight()), static_cast<int>(image.getWidth()), type,
                     const_cast<void*>(data));
  if (static_cast<size_t>(view.total() * view.elemSize()) > image.getOutputDataSize(bits)) {
    return absl::InternalError("DICOM: rendered buffer smaller than expected");
  }
  if (mono) {
    result.image = view.clone();  // DicomImage owns `data`.
  } else {
    cv::cvtColor(view, result.image, cv::COLOR_RGB2BGR);
  }
  return result;
}

}  // namespace

bool LooksLikeDicom(std::string_view bytes) {
  return bytes.size() >= 132 && bytes.substr(128, 4) == "DICM";
}

absl::StatusOr<DicomImageResult> DecodeDicom(std::string_view bytes, const DicomOptions& options,
                                             const DicomScan* scan) {
  if (options.output_bits != 8 && options.output_bits != 16) {
    return absl::InvalidArgumentError("DICOM: output_bits must be 8 or 16");
  }
  if (options.window == WindowSource::kCaller && !(options.window_width >= 1.0)) {
    return absl::InvalidArgumentError("DICOM: window_width must be >= 1");
  }
  if (bytes.empty()) return absl::InvalidArgumentError("empty DICOM data");
  if (static_cast<int64_t>(bytes.size()) > options.max_encoded_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DICOM data is ", bytes.size(), " bytes, over the limit of ", options.max_encoded_bytes));
  }
  // DCMTK trusts declared lengths (a deflated 1 MB file can declare and
  // inflate 1 GiB; a bad RLE segment offset reads out of bounds), so the
  // structure is checked first, without allocating what it declares.
  if (scan == nullptr) {
    DicomScanLimits limits;
    limits.max_pixels = options.max_pixels;
    limits.max_pixel_bytes = options.max_pixel_bytes;
    RETURN_IF_ERROR(ScanDicom(bytes, limits).status());
  }
  InitDcmtkOnce();
  try {
    return DecodeDicomUnsafe(bytes, options);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("DICOM decoding failed: ", e.what()));
  } catch (...) {
    return absl::InvalidArgumentError("DICOM decoding failed");
  }
}

}  // namespace rectifier::imaging
