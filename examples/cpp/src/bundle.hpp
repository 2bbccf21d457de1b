// A bmd-edge bundle for C++: bundle.json read, the chosen variant's files checked against their
// sha256, the model compiled once; `predict` is image + age + sex -> femoral-neck BMD (g/cm²).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <openvino/openvino.hpp>

#include "json.hpp"
#include "preprocess.hpp"

namespace bmd {

struct Field {             // one clinical field of the bundle's schema (input.schema.fields)
  std::string name, kind;  // kind: continuous | categorical
  double mean = 0, std = 1, low = 0, high = 0;
  std::vector<std::string> choices;
};

struct Case {              // what one prediction needs; side/select "", "left" or "right"
  double age = 0;
  std::string sex;         // "F" or "M"
  std::string side, select;
};

class Bundle {
 public:
  // Reads DIR/bundle.json, picks the OpenVINO int8 variant, checks the sha256 of each of its
  // files against bundle.json's `files` (throws std::runtime_error on any mismatch), compiles.
  explicit Bundle(const std::string& dir, int threads = 0);

  double predict(const Image& image, const Case& c);   // BMD, g/cm²
  const std::string& model_name() const { return model_name_; }
  const std::string& model_version() const { return model_version_; }
  const std::string& variant() const { return variant_; }
  const PreprocessSpec& spec() const { return spec_; }

 private:
  void encode(const Case& c, std::vector<float>& values, std::vector<float>& present) const;

  std::string dir_, model_name_, model_version_, variant_;
  PreprocessSpec spec_;
  std::vector<Field> fields_;
  ov::Core core_;
  ov::CompiledModel compiled_;
};

}  // namespace bmd
