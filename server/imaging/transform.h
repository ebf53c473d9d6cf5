// ImageTransform: the affine map from original-image pixels to model-input pixels.
#ifndef RECTIFIER_SERVER_IMAGING_TRANSFORM_H_
#define RECTIFIER_SERVER_IMAGING_TRANSFORM_H_

#include <algorithm>

namespace rectifier::imaging {

// input = original * scale + offset, per axis. Covers stretch (offset 0),
// letterbox (equal scales, offset = padding) and shorter-side + center crop
// (offset = -crop origin). The original size is the image as the client sent
// it (after EXIF orientation), even when it was decoded at 1/2, 1/4 or 1/8.
struct ImageTransform {
  double scale_x = 1.0;
  double scale_y = 1.0;
  double offset_x = 0.0;
  double offset_y = 0.0;
  int original_width = 0;
  int original_height = 0;

  double ToOriginalX(double input_x) const { return (input_x - offset_x) / scale_x; }
  double ToOriginalY(double input_y) const { return (input_y - offset_y) / scale_y; }
  double ClampX(double x) const { return std::clamp(x, 0.0, static_cast<double>(original_width)); }
  double ClampY(double y) const { return std::clamp(y, 0.0, static_cast<double>(original_height)); }
};

}  // namespace rectifier::imaging

#endif  // RECTIFIER_SERVER_IMAGING_TRANSFORM_H_
