// Imaging micro-benchmarks: decode + preprocess against plain OpenCV, and our
// NMS against OpenCV's on YOLO-sized candidate sets.
//   build-imaging/bench/imaging/imaging_bench --benchmark_min_time=1
#include <benchmark/benchmark.h>
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcrleerg.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmjpls/djencode.h>

#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <string>
#include <vector>

#include "server/imaging/decode.h"
#include "server/imaging/detection.h"
#include "server/imaging/dicom.h"
#include "server/imaging/preprocess.h"

namespace rectifier::imaging {
namespace {

// A road-like frame: smooth gradients, shapes and mild noise, so the JPEG
// has a realistic size (not the worst case of pure noise).
std::string FrameJpeg(int width, int height) {
  cv::Mat m(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      m.at<cv::Vec3b>(y, x) =
          cv::Vec3b(static_cast<uchar>(x * 255 / width), static_cast<uchar>(y * 255 / height), 128);
    }
  }
  std::mt19937 rng(1);
  for (int i = 0; i < 60; ++i) {
    cv::rectangle(m, cv::Rect(rng() % width, rng() % height, 40 + rng() % 200, 40 + rng() % 200),
                  cv::Scalar(rng() % 256, rng() % 256, rng() % 256), cv::FILLED);
  }
  cv::Mat noise(height, width, CV_8UC3);
  cv::randu(noise, 0, 16);
  m += noise;
  std::vector<uchar> buf;
  cv::imencode(".jpg", m, buf, {cv::IMWRITE_JPEG_QUALITY, 90});
  return std::string(buf.begin(), buf.end());
}

std::string Scan16Png(int size) {
  cv::Mat m(size, size, CV_16UC1);
  cv::randu(m, 0, 4096);
  cv::GaussianBlur(m, m, cv::Size(9, 9), 3);
  std::vector<uchar> buf;
  cv::imencode(".png", m, buf);
  return std::string(buf.begin(), buf.end());
}

PreprocessOptions Letterbox640() {
  PreprocessOptions o;
  o.width = 640;
  o.height = 640;
  o.resize = ResizeMode::kLetterbox;
  return o;
}

void DecodeLetterbox(benchmark::State& state, bool scaled) {
  const std::string jpeg = FrameJpeg(1920, 1080);
  const PreprocessOptions pre = Letterbox640();
  std::vector<float> out(PreprocessOutputSize(pre));
  DecodeOptions dec;
  if (scaled) {
    const SideBounds b = ScaledDecodeBounds(pre, 1920, 1080);
    dec.min_short_side = b.min_short_side;
    dec.min_long_side = b.min_long_side;
  }
  for (auto _ : state) {
    auto image = DecodeImage(jpeg, dec);
    auto t = Preprocess(image->image, pre, absl::MakeSpan(out),
                        cv::Size(image->original_width, image->original_height));
    benchmark::DoNotOptimize(t);
  }
  state.SetItemsProcessed(state.iterations());
}
void Jpeg1080pLetterbox640Full(benchmark::State& s) { DecodeLetterbox(s, false); }
void Jpeg1080pLetterbox640Scaled(benchmark::State& s) { DecodeLetterbox(s, true); }
BENCHMARK(Jpeg1080pLetterbox640Full)->Unit(benchmark::kMillisecond);
BENCHMARK(Jpeg1080pLetterbox640Scaled)->Unit(benchmark::kMillisecond);

// Preprocessing alone, on an already decoded 1920x1080 frame.
void Preprocess1080pLetterbox640(benchmark::State& state) {
  const std::string jpeg = FrameJpeg(1920, 1080);
  auto image = DecodeImage(jpeg, DecodeOptions());
  const PreprocessOptions pre = Letterbox640();
  std::vector<float> out(PreprocessOutputSize(pre));
  for (auto _ : state) {
    auto t = Preprocess(image->image, pre, absl::MakeSpan(out));
    benchmark::DoNotOptimize(t);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(Preprocess1080pLetterbox640)->Unit(benchmark::kMillisecond);

// Baseline: what a hand-written server does (imdecode + resize, no
// normalisation, no tensor layout).
void Jpeg1080pBaselineImdecodeResize(benchmark::State& state) {
  const std::string jpeg = FrameJpeg(1920, 1080);
  const cv::Mat encoded(1, static_cast<int>(jpeg.size()), CV_8U, const_cast<char*>(jpeg.data()));
  for (auto _ : state) {
    cv::Mat image = cv::imdecode(encoded, cv::IMREAD_COLOR);
    cv::Mat resized;
    cv::resize(image, resized, cv::Size(640, 360));
    benchmark::DoNotOptimize(resized.data);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(Jpeg1080pBaselineImdecodeResize)->Unit(benchmark::kMillisecond);

void Scan16To224(benchmark::State& state) {
  const std::string png = Scan16Png(512);
  PreprocessOptions pre;
  pre.color = ColorFormat::kGray;
  std::vector<float> out(PreprocessOutputSize(pre));
  for (auto _ : state) {
    auto image = DecodeImage(png, DecodeOptions());
    auto t = Preprocess(image->image, pre, absl::MakeSpan(out));
    benchmark::DoNotOptimize(t);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(Scan16To224)->Unit(benchmark::kMillisecond);

void Scan16BaselineImdecodeResize(benchmark::State& state) {
  const std::string png = Scan16Png(512);
  const cv::Mat encoded(1, static_cast<int>(png.size()), CV_8U, const_cast<char*>(png.data()));
  for (auto _ : state) {
    cv::Mat image = cv::imdecode(encoded, cv::IMREAD_ANYDEPTH);
    cv::Mat resized;
    cv::resize(image, resized, cv::Size(224, 224));
    benchmark::DoNotOptimize(resized.data);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(Scan16BaselineImdecodeResize)->Unit(benchmark::kMillisecond);

// A 512x512 16-bit CT slice (12 bits used, HU intercept) as DICOM bytes.
std::string CtSlice(E_TransferSyntax xfer) {
  DcmRLEEncoderRegistration::registerCodecs();
  DJLSEncoderRegistration::registerCodecs();
  cv::Mat m(512, 512, CV_16UC1);
  cv::randu(m, 0, 4096);
  cv::GaussianBlur(m, m, cv::Size(9, 9), 3);
  DcmFileFormat file;
  DcmDataset* ds = file.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4.5");
  ds->putAndInsertString(DCM_Modality, "CT");
  ds->putAndInsertUint16(DCM_Rows, 512);
  ds->putAndInsertUint16(DCM_Columns, 512);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 12);
  ds->putAndInsertUint16(DCM_HighBit, 11);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  ds->putAndInsertString(DCM_RescaleIntercept, "-1024");
  ds->putAndInsertString(DCM_RescaleSlope, "1");
  ds->putAndInsertString(DCM_WindowCenter, "40");
  ds->putAndInsertString(DCM_WindowWidth, "400");
  ds->putAndInsertUint16Array(DCM_PixelData, m.ptr<Uint16>(), m.total());
  ds->chooseRepresentation(xfer, nullptr);
  file.validateMetaInfo(xfer);
  std::vector<char> buf(16 << 20);
  DcmOutputBufferStream out(buf.data(), buf.size());
  file.transferInit();
  file.write(out, xfer, EET_ExplicitLength, nullptr);
  file.transferEnd();
  out.flush();
  void* data = nullptr;
  offile_off_t length = 0;
  out.flushBuffer(data, length);
  return std::string(static_cast<char*>(data), static_cast<size_t>(length));
}

// DICOM CT slice -> file window -> 224x224 tensor. range(0): 0 uncompressed,
// 1 RLE, 2 JPEG-LS lossless.
void DicomCtTo224(benchmark::State& state) {
  const E_TransferSyntax xfers[] = {EXS_LittleEndianExplicit, EXS_RLELossless, EXS_JPEGLSLossless};
  const std::string bytes = CtSlice(xfers[state.range(0)]);
  PreprocessOptions pre;
  pre.color = ColorFormat::kGray;
  pre.sixteen_bit = SixteenBitMode::kFullRange;
  std::vector<float> out(PreprocessOutputSize(pre));
  for (auto _ : state) {
    auto image = DecodeDicom(bytes, DicomOptions());
    if (!image.ok()) {
      state.SkipWithError(std::string(image.status().message()).c_str());
      break;
    }
    auto t = Preprocess(image->image, pre, absl::MakeSpan(out));
    benchmark::DoNotOptimize(t);
  }
  state.counters["bytes"] = static_cast<double>(bytes.size());
}
BENCHMARK(DicomCtTo224)->DenseRange(0, 2)->Unit(benchmark::kMillisecond);

// YOLO head: 8400 anchors x 80 classes. range(0) = per mille of anchors
// above the 0.25 threshold (1000: every anchor is a candidate).
struct Candidates {
  std::vector<float> head;  // [84, 8400]
  std::vector<Box> boxes;
  std::vector<float> scores;
  std::vector<int> classes;
};

Candidates MakeCandidates(int per_mille) {
  const int nc = 80;
  const int n = 8400;
  Candidates c;
  c.head.assign(static_cast<size_t>(4 + nc) * n, 0.0f);
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> pos(0, 640), size(8, 160), low(0.0f, 0.2f),
      high(0.3f, 1.0f);
  for (int a = 0; a < n; ++a) {
    const float cx = pos(rng), cy = pos(rng), w = size(rng), h = size(rng);
    c.head[a] = cx;
    c.head[n + a] = cy;
    c.head[2 * n + a] = w;
    c.head[3 * n + a] = h;
    for (int k = 0; k < nc; ++k) c.head[(4 + k) * n + a] = low(rng);
    if (static_cast<int>(rng() % 1000) < per_mille) {
      const int k = static_cast<int>(rng() % nc);
      const float s = high(rng);
      c.head[(4 + k) * n + a] = s;
      c.boxes.push_back({cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2});
      c.scores.push_back(s);
      c.classes.push_back(k);
    }
  }
  return c;
}

void YoloDecodeNms(benchmark::State& state) {
  const Candidates c = MakeCandidates(static_cast<int>(state.range(0)));
  DetectionOptions o;
  const ImageTransform t{1.0, 1.0, 0.0, 0.0, 640, 640};
  for (auto _ : state) {
    auto r = DecodeYoloDetections(c.head, 80, 8400, o, t);
    benchmark::DoNotOptimize(r);
  }
  state.counters["candidates"] = static_cast<double>(c.boxes.size());
}
BENCHMARK(YoloDecodeNms)->Arg(50)->Arg(1000)->Unit(benchmark::kMicrosecond);

void NmsOurs(benchmark::State& state) {
  const Candidates c = MakeCandidates(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto keep = NonMaxSuppression(c.boxes, c.scores, c.classes, 0.45f, 300);
    benchmark::DoNotOptimize(keep);
  }
  state.counters["candidates"] = static_cast<double>(c.boxes.size());
}
BENCHMARK(NmsOurs)->Arg(50)->Arg(1000)->Unit(benchmark::kMicrosecond);

// OpenCV 4.6 has no NMSBoxesBatched; this is what it does: offset each class
// by a large constant, then one NMSBoxes.
void NmsOpenCvBatched(benchmark::State& state) {
  const Candidates c = MakeCandidates(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    std::vector<cv::Rect2d> rects;
    rects.reserve(c.boxes.size());
    for (size_t i = 0; i < c.boxes.size(); ++i) {
      const double off = c.classes[i] * 4096.0;
      rects.emplace_back(c.boxes[i].x1 + off, c.boxes[i].y1 + off, c.boxes[i].x2 - c.boxes[i].x1,
                         c.boxes[i].y2 - c.boxes[i].y1);
    }
    std::vector<int> keep;
    // top_k limits the candidates considered, not the boxes kept, so it
    // stays 0 and the kept list is cut to 300 afterwards, as ours.
    cv::dnn::NMSBoxes(rects, c.scores, 0.25f, 0.45f, keep);
    if (keep.size() > 300) keep.resize(300);
    benchmark::DoNotOptimize(keep);
  }
  state.counters["candidates"] = static_cast<double>(c.boxes.size());
}
BENCHMARK(NmsOpenCvBatched)->Arg(50)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace rectifier::imaging

BENCHMARK_MAIN();
