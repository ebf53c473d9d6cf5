// Rectifier's squeeze-and-excitation block (EfficientNet, MobileNetV3) as
// one step: y = x * gate(W2 act(W1 mean(x) + b1) + b2), the channel means
// of x through two small fully connected layers (1x1 convolutions on a 1x1
// image) scaling x's channels. In the graph it is five ops (global average
// pooling, two convolutions with their activations, a multiply); as oneDNN
// steps each waits for the whole thread team, and the two convolutions run
// oneDNN's 1x1 kernel on a single pixel (docs/ENGINE.md, "Squeeze and
// excitation").
#ifndef RECTIFIER_SERVER_ENGINE_OPS_SQUEEZE_EXCITE_H_
#define RECTIFIER_SERVER_ENGINE_OPS_SQUEEZE_EXCITE_H_

#include <cstdint>

namespace rectifier::engine {

struct SqueezeExciteParams {
  int64_t batch = 0;
  int64_t channels = 0;  // C: a multiple of 8
  int64_t reduced = 0;   // the first layer's outputs (C / 4 in EfficientNet)
  int64_t spatial = 0;   // H * W
  // The first layer's activation.
  enum class Act { kNone, kRelu, kSilu } act = Act::kNone;
  // x holds the producer's output before its SiLU: the kernel applies
  // SiLU as it reads x (writing it back) instead of a pass of its own.
  bool silu_input = false;
};

// True when the kernel runs these parameters on this CPU (AVX2 and FMA).
bool SqueezeExciteSupported(const SqueezeExciteParams& p);

// x and y: nChw8c ([N][C/8][H*W][8]); y may be x (in place), and x is
// rewritten with SiLU(x) where p.silu_input. w1: [reduced][C]
// (the first convolution's weights as ONNX stores them), b1: [reduced];
// w2t: [reduced][C] (the second convolution's weights transposed), b2: [C].
// The gate is the logistic sigmoid. Runs on the calling thread's OpenMP
// team, one parallel region.
void SqueezeExcite(const SqueezeExciteParams& p, float* x, const float* w1, const float* b1,
                   const float* w2t, const float* b2, float* y);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OPS_SQUEEZE_EXCITE_H_
