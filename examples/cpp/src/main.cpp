// bmd_edge_cpp: the int8 bmd-edge model from C++, no Python.
//   bmd_edge_cpp --bundle DIR --age 70 --sex F [--side left|right] [--select left|right]
//                [--dump-input FILE] IMAGE.pgm [--age 65 --sex M OTHER.pgm ...]
// Options apply to the images after them (the model is compiled once). Prints one line per image: "<file>\t<BMD g/cm² to 6 decimals>". Errors: one line on stderr
// ("error: ..."), exit 2 — a bundle whose digests do not match is refused before any inference.
#include <cstdlib>
#include <fstream>
#include <memory>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "bundle.hpp"

int main(int argc, char** argv) {
  std::unique_ptr<bmd::Bundle> bundle;
  bmd::Case c;
  std::string dump;
  bool have_age = false;
  int n_images = 0;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--bundle") bundle = std::make_unique<bmd::Bundle>(value());
      else if (a == "--age") { c.age = std::stod(value()); have_age = true; }
      else if (a == "--sex") c.sex = value();
      else if (a == "--side") c.side = value();
      else if (a == "--select") c.select = value();
      else if (a == "--dump-input") dump = value();
      else if (a.rfind("--", 0) == 0) throw std::runtime_error("unknown option " + a);
      else {
        if (!bundle || !have_age || c.sex.empty())
          throw std::runtime_error("give --bundle, --age and --sex before the first image");
        for (const std::string* s : {&c.side, &c.select})
          if (!s->empty() && *s != "left" && *s != "right")
            throw std::runtime_error("side/select '" + *s + "' is not left or right");
        bmd::Image image = bmd::read_pgm(a);
        if (!dump.empty()) {  // the preprocessed model input, raw float32, for parity checks
          std::vector<float> x = bmd::preprocess(image, bundle->spec(), c.side, c.select);
          std::ofstream(dump, std::ios::binary)
              .write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(x.size() * 4));
          dump.clear();
        }
        std::printf("%s\t%.6f\n", a.c_str(), bundle->predict(image, c));
        std::fflush(stdout);
        ++n_images;
      }
    }
    if (n_images == 0)
      throw std::runtime_error("usage: bmd_edge_cpp --bundle DIR --age YEARS --sex F|M "
                               "[--side left|right] [--select left|right] [--dump-input F] "
                               "IMAGE.pgm [--age ... IMAGE.pgm]...");
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
