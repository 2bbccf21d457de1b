// See preprocess.hpp. Every step mirrors a line of bmd_edge/preprocess.py; the comments name it.
#include "preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>

namespace bmd {
namespace {

constexpr double kPercentileSamples = 65536.0;  // _PERCENTILE_SAMPLES

Image crop(const Image& im, int y, int x, int h, int w) {
  Image out{h, w, std::vector<float>(static_cast<size_t>(h) * w)};
  for (int r = 0; r < h; ++r)
    std::copy_n(&im.pixels[static_cast<size_t>(y + r) * im.width + x], w, &out.pixels[static_cast<size_t>(r) * w]);
  return out;
}

// select_side(): the largest square in the chosen half (patient's right = image's left).
Image select_side(const Image& im, const std::string& side) {
  int half = im.width / 2;
  int x0 = side == "right" ? 0 : im.width - half;
  int s = std::min(half, im.height);
  return crop(im, (im.height - s) / 2, x0 + (half - s) / 2, s, s);
}

// numpy.percentile(..., method="linear") of one sorted sample.
double percentile(const std::vector<float>& sorted, double p) {
  double pos = p / 100.0 * static_cast<double>(sorted.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  double t = pos - static_cast<double>(lo);
  double a = sorted[lo], b = sorted[hi];
  return t >= 0.5 ? b - (b - a) * (1.0 - t) : a + (b - a) * t;
}

// _window(): percentiles of pixels[::step, ::step].
void window(const Image& im, const PreprocessSpec& spec, double& lo, double& hi) {
  int step = std::max(1, static_cast<int>(std::ceil(std::sqrt(im.pixels.size() / kPercentileSamples))));
  std::vector<float> sample;
  for (int y = 0; y < im.height; y += step)
    for (int x = 0; x < im.width; x += step) sample.push_back(im.at(y, x));
  std::sort(sample.begin(), sample.end());
  lo = percentile(sample, spec.window_low);
  hi = percentile(sample, spec.window_high);
}

// OpenCV's computeResizeAreaTab: per destination index, (source index, weight) pairs.
struct Tap { int src; float w; };
std::vector<std::vector<Tap>> area_taps(int ssize, int dsize) {
  double scale = static_cast<double>(ssize) / dsize;
  std::vector<std::vector<Tap>> taps(dsize);
  for (int dx = 0; dx < dsize; ++dx) {
    double fsx1 = dx * scale, fsx2 = fsx1 + scale;
    double cell = std::min(scale, ssize - fsx1);
    int sx1 = static_cast<int>(std::ceil(fsx1)), sx2 = static_cast<int>(std::floor(fsx2));
    sx2 = std::min(sx2, ssize - 1);
    sx1 = std::min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) taps[dx].push_back({sx1 - 1, static_cast<float>((sx1 - fsx1) / cell)});
    for (int sx = sx1; sx < sx2; ++sx) taps[dx].push_back({sx, static_cast<float>(1.0 / cell)});
    if (fsx2 - sx2 > 1e-3)
      taps[dx].push_back({sx2, static_cast<float>(std::min(std::min(fsx2 - sx2, 1.0), cell) / cell)});
  }
  return taps;
}

Image resize_area(const Image& im, int width, int height) {
  auto tx = area_taps(im.width, width), ty = area_taps(im.height, height);
  Image rows{height, im.width, std::vector<float>(static_cast<size_t>(height) * im.width, 0.f)};
  for (int dy = 0; dy < height; ++dy)
    for (const Tap& t : ty[dy])
      for (int x = 0; x < im.width; ++x) rows.pixels[static_cast<size_t>(dy) * im.width + x] += t.w * im.at(t.src, x);
  Image out{height, width, std::vector<float>(static_cast<size_t>(height) * width, 0.f)};
  for (int dy = 0; dy < height; ++dy)
    for (int dx = 0; dx < width; ++dx) {
      float s = 0.f;
      for (const Tap& t : tx[dx]) s += t.w * rows.at(dy, t.src);
      out.pixels[static_cast<size_t>(dy) * width + dx] = s;
    }
  return out;
}

// OpenCV INTER_LINEAR (half-pixel centres, edges clamped).
Image resize_linear(const Image& im, int width, int height) {
  auto coord = [](int d, int ssize, int dsize, int& s, float& f) {
    double fx = (d + 0.5) * ssize / dsize - 0.5;
    s = static_cast<int>(std::floor(fx));
    f = static_cast<float>(fx - s);
    if (s < 0) { s = 0; f = 0.f; }
    if (s >= ssize - 1) { s = ssize - 1; f = 0.f; }
  };
  Image out{height, width, std::vector<float>(static_cast<size_t>(height) * width)};
  for (int dy = 0; dy < height; ++dy) {
    int sy; float fy; coord(dy, im.height, height, sy, fy);
    int sy1 = std::min(sy + 1, im.height - 1);
    for (int dx = 0; dx < width; ++dx) {
      int sx; float fx; coord(dx, im.width, width, sx, fx);
      int sx1 = std::min(sx + 1, im.width - 1);
      float top = im.at(sy, sx) * (1 - fx) + im.at(sy, sx1) * fx;
      float bot = im.at(sy1, sx) * (1 - fx) + im.at(sy1, sx1) * fx;
      out.pixels[static_cast<size_t>(dy) * width + dx] = top * (1 - fy) + bot * fy;
    }
  }
  return out;
}

// _resize(): k x k block means first (remainder trimmed evenly; mirrored like the flip would),
// then INTER_AREA to shrink or INTER_LINEAR to enlarge.
Image resize(Image im, int width, int height, bool mirrored) {
  if (im.width == width && im.height == height) return im;
  int k = std::min(im.height / height, im.width / width);
  if (k >= 2) {
    int ry = im.height % k, rx = im.width % k;
    int x0 = mirrored ? rx - rx / 2 : rx / 2, y0 = ry / 2;
    Image trimmed = crop(im, y0, x0, im.height - ry, im.width - rx);
    int h = trimmed.height / k, w = trimmed.width / k;
    Image blocks{h, w, std::vector<float>(static_cast<size_t>(h) * w)};
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        float s = 0.f;
        for (int j = 0; j < k; ++j)
          for (int i = 0; i < k; ++i) s += trimmed.at(y * k + j, x * k + i);
        blocks.pixels[static_cast<size_t>(y) * w + x] = s / static_cast<float>(k * k);
      }
    im = std::move(blocks);
    if (im.width == width && im.height == height) return im;
  }
  bool shrink = static_cast<long>(width) * height < static_cast<long>(im.width) * im.height;
  return shrink ? resize_area(im, width, height) : resize_linear(im, width, height);
}

}  // namespace

std::vector<float> preprocess(const Image& image, const PreprocessSpec& spec,
                              const std::string& side_in, const std::string& select) {
  if (image.height < 2 || image.width < 2) throw std::runtime_error("image is smaller than 2x2");
  Image img = image;
  std::string side = side_in;
  if (!select.empty()) {
    img = select_side(img, select);
    if (side.empty()) side = select;
  }
  double lo, hi;
  window(img, spec, lo, hi);
  bool flip = !side.empty() && !spec.canonical_side.empty() && side != spec.canonical_side;
  const int s = spec.size;
  Image content;
  if (spec.resize == "stretch") {
    content = resize(img, s, s, flip);
  } else if (spec.resize == "letterbox") {
    double scale = static_cast<double>(s) / std::max(img.height, img.width);
    content = resize(img, std::max(1, static_cast<int>(std::nearbyint(img.width * scale))),
                     std::max(1, static_cast<int>(std::nearbyint(img.height * scale))), flip);
  } else if (spec.resize == "center-crop") {
    double scale = static_cast<double>(s) / std::min(img.height, img.width);
    content = resize(img, std::max(s, static_cast<int>(std::nearbyint(img.width * scale))),
                     std::max(s, static_cast<int>(std::nearbyint(img.height * scale))), flip);
  } else {
    throw std::runtime_error("unknown resize rule '" + spec.resize + "'");
  }
  for (float v : content.pixels)
    if (!std::isfinite(v)) throw std::runtime_error("image contains NaN or infinite pixels");
  if (flip)
    for (int y = 0; y < content.height; ++y)
      std::reverse(content.pixels.begin() + static_cast<long>(y) * content.width,
                   content.pixels.begin() + static_cast<long>(y + 1) * content.width);
  const float flo = static_cast<float>(lo), range = static_cast<float>(hi - lo);
  for (float& v : content.pixels) v = hi > lo ? std::clamp((v - flo) / range, 0.f, 1.f) : 0.f;

  std::vector<float> out(static_cast<size_t>(s) * s, 0.f);
  if (content.height <= s && content.width <= s) {  // letterbox / stretch: centre, pad with 0
    int y0 = (s - content.height) / 2, x0 = (s - content.width) / 2;
    for (int y = 0; y < content.height; ++y)
      for (int x = 0; x < content.width; ++x) out[static_cast<size_t>(y0 + y) * s + x0 + x] = content.at(y, x);
  } else {  // center-crop
    int y0 = (content.height - s) / 2, x0 = (content.width - s) / 2;
    for (int y = 0; y < s; ++y)
      for (int x = 0; x < s; ++x) out[static_cast<size_t>(y) * s + x] = content.at(y0 + y, x0 + x);
  }
  const float m = static_cast<float>(spec.mean), sd = static_cast<float>(spec.std);
  for (float& v : out) v = (v - m) / sd;
  return out;
}

Image read_pgm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open image " + path);
  std::string magic;
  in >> magic;
  auto next_int = [&in, &path]() {
    int v;
    while (in >> std::ws && in.peek() == '#') { std::string c; std::getline(in, c); }
    if (!(in >> v)) throw std::runtime_error(path + ": malformed PGM header");
    return v;
  };
  if (magic != "P5") throw std::runtime_error(path + ": not a binary PGM (P5)");
  int w = next_int(), h = next_int(), maxval = next_int();
  in.get();  // the single whitespace byte after maxval
  if (w < 2 || h < 2 || w > 65535 || h > 65535 || maxval < 1 || maxval > 65535)
    throw std::runtime_error(path + ": implausible PGM header");
  int bytes = maxval > 255 ? 2 : 1;
  std::vector<unsigned char> raw(static_cast<size_t>(w) * h * bytes);
  if (!in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size())))
    throw std::runtime_error(path + ": PGM pixel data is truncated");
  Image im{h, w, std::vector<float>(static_cast<size_t>(w) * h)};
  for (size_t i = 0; i < im.pixels.size(); ++i) {
    unsigned v = bytes == 2 ? (unsigned(raw[2 * i]) << 8) | raw[2 * i + 1] : raw[i];
    im.pixels[i] = static_cast<float>(v) / static_cast<float>(maxval);
  }
  return im;
}

}  // namespace bmd
