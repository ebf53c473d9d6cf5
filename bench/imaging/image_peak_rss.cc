// Peak memory of decoding and preprocessing one image, per format and size,
// next to the worst case the image memory budget charges for it
// (EstimateImageBytes). Each image runs in a forked child whose peak RSS
// (VmHWM) is reset just before PrepareImage (docs/IMAGING.md).
//
//   build/bench/imaging/image_peak_rss
#include <dcmtk/config/osconfig.h>  // Must come first among DCMTK headers.
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "server/service/image_pipeline.h"

namespace {

using rectifier::service::ModelImaging;

int64_t StatusKib(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(std::string(field).size()));
  }
  return -1;
}

std::string Encode(const cv::Mat& image, const std::string& ext) {
  std::vector<unsigned char> bytes;
  cv::imencode(ext, image, bytes);
  return std::string(bytes.begin(), bytes.end());
}

// A smooth gradient with some texture: compresses like a real scan or frame.
cv::Mat Picture(int rows, int cols, int type) {
  cv::Mat image(rows, cols, type);
  cv::Mat plane(rows, cols, CV_32F);
  for (int y = 0; y < rows; ++y) {
    float* p = plane.ptr<float>(y);
    for (int x = 0; x < cols; ++x) p[x] = static_cast<float>((x + y) % 4096) / 4096.0f;
  }
  const double full = CV_MAT_DEPTH(type) == CV_16U ? 65535.0 : 255.0;
  std::vector<cv::Mat> planes(CV_MAT_CN(type), plane * full);
  cv::Mat merged;
  cv::merge(planes, merged);
  merged.convertTo(image, type);
  return image;
}

std::string Dicom(int rows, int cols, E_TransferSyntax xfer) {
  DcmFileFormat file;
  DcmDataset* ds = file.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.826.0.1.3680043.2.1143.9");
  ds->putAndInsertString(DCM_Modality, "CT");
  ds->putAndInsertUint16(DCM_Rows, static_cast<Uint16>(rows));
  ds->putAndInsertUint16(DCM_Columns, static_cast<Uint16>(cols));
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 16);
  ds->putAndInsertUint16(DCM_HighBit, 15);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  const cv::Mat pixels = Picture(rows, cols, CV_16UC1);
  ds->putAndInsertUint16Array(DCM_PixelData, pixels.ptr<Uint16>(), pixels.total());
  file.validateMetaInfo(xfer);
  std::vector<char> buffer(static_cast<size_t>(rows) * cols * 2 + (1 << 20));
  DcmOutputBufferStream out(buffer.data(), buffer.size());
  file.transferInit();
  file.write(out, xfer, EET_ExplicitLength, nullptr);
  file.transferEnd();
  out.flush();
  void* data = nullptr;
  offile_off_t length = 0;
  out.flushBuffer(data, length);
  return std::string(static_cast<char*>(data), static_cast<size_t>(length));
}

struct Case {
  std::string name;
  std::function<std::string()> make;
};

}  // namespace

int main() {
  ModelImaging imaging;
  imaging.task = rectifier::service::ImageTask::kClassification;
  imaging.preprocess.resize = rectifier::imaging::ResizeMode::kLetterbox;
  imaging.input_item_shape = {3, 224, 224};
  const std::vector<Case> cases = {
      {"JPEG 8-bit RGB 1920x1080", [] { return Encode(Picture(1080, 1920, CV_8UC3), ".jpg"); }},
      {"JPEG 8-bit RGB 8000x6000", [] { return Encode(Picture(6000, 8000, CV_8UC3), ".jpg"); }},
      {"PNG 8-bit RGB 4096x4096", [] { return Encode(Picture(4096, 4096, CV_8UC3), ".png"); }},
      {"PNG 16-bit gray 4096x4096", [] { return Encode(Picture(4096, 4096, CV_16UC1), ".png"); }},
      {"PNG 16-bit RGBA 16384x4096",
       [] { return Encode(cv::Mat(4096, 16384, CV_16UC4, cv::Scalar::all(1000)), ".png"); }},
      {"TIFF 16-bit gray 4096x4096", [] { return Encode(Picture(4096, 4096, CV_16UC1), ".tiff"); }},
      {"DICOM 16-bit 512x512", [] { return Dicom(512, 512, EXS_LittleEndianExplicit); }},
      {"DICOM 16-bit 3072x3072", [] { return Dicom(3072, 3072, EXS_LittleEndianExplicit); }},
      {"DICOM deflated 16-bit 3072x3072",
       [] { return Dicom(3072, 3072, EXS_DeflatedLittleEndianExplicit); }},
  };
  std::printf("| image | encoded | budget charge | peak RSS growth |\n| --- | --- | --- | --- |\n");
  std::fflush(stdout);
  for (const Case& c : cases) {
    const pid_t child = fork();
    if (child == 0) {
      const std::string bytes = c.make();
      const auto estimate = rectifier::service::EstimateImageBytes(bytes, imaging);
      std::ofstream("/proc/self/clear_refs") << "5";  // Resets VmHWM to the current RSS.
      const int64_t before = StatusKib("VmHWM:");
      const auto prepared = rectifier::service::PrepareImage(bytes, imaging, nullptr);
      const int64_t peak = StatusKib("VmHWM:");
      if (!prepared.ok() || !estimate.ok()) {
        std::printf("| %s | failed: %s | | |\n", c.name.c_str(),
                    std::string(prepared.status().message()).c_str());
      } else {
        std::printf("| %s | %.1f MiB | %.0f MiB | %.0f MiB |\n", c.name.c_str(),
                    bytes.size() / 1048576.0, *estimate / 1048576.0, (peak - before) / 1024.0);
      }
      std::fflush(stdout);
      _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
  }
  return 0;
}
