// The bundle's preprocessing, reproduced from bmd_edge/preprocess.py step for step:
// select (pelvis crop) -> percentile window on a strided sample -> resize (block mean, then
// OpenCV-style INTER_AREA to shrink / INTER_LINEAR to enlarge) -> canonical flip -> window to
// [0, 1] -> letterbox/stretch/center-crop -> (x - mean) / std.
#pragma once
#include <string>
#include <vector>

namespace bmd {

struct Image {
  int height = 0;
  int width = 0;
  std::vector<float> pixels;  // row-major, float in [0, 1], 1 = bone bright
  float at(int y, int x) const { return pixels[static_cast<size_t>(y) * width + x]; }
};

struct PreprocessSpec {
  int size = 224;                   // output S x S
  std::string resize = "letterbox"; // letterbox | stretch | center-crop
  double window_low = 0.5;          // percentiles of the intensity window
  double window_high = 99.5;
  double mean = 0.5;                // normalisation after windowing to [0, 1]
  double std = 0.25;
  std::string canonical_side = "right";  // "" = never flip
};

// Model input, S*S floats (the (1, 1, S, S) tensor). side/select: "", "left" or "right".
std::vector<float> preprocess(const Image& image, const PreprocessSpec& spec,
                              const std::string& side, const std::string& select);

// Read a binary PGM (P5, 8- or 16-bit), scaled by its maxval to [0, 1] like a PNG of that depth.
Image read_pgm(const std::string& path);

}  // namespace bmd
