// See bundle.hpp. Reads only keys that bundle formats 1 and 2 share: model{name, version},
// input{preprocess, schema{fields}}, variants{name: {file, files, runtime, precision}}, files.
#include "bundle.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "sha256.hpp"

namespace bmd {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("missing file " + path + "; is this a bmd-edge bundle?");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

Bundle::Bundle(const std::string& dir, int threads) : dir_(dir) {
  Json meta = parse_json(read_text(dir + "/bundle.json"));
  model_name_ = meta.at("model").at("name").str();
  model_version_ = meta.at("model").at("version").str();

  const Json& pre = meta.at("input").at("preprocess");
  spec_.size = static_cast<int>(pre.at("size").num());
  spec_.resize = pre.at("resize").str();
  spec_.window_low = pre.at("window_percentiles").array.at(0).num();
  spec_.window_high = pre.at("window_percentiles").array.at(1).num();
  spec_.mean = pre.at("mean").num();
  spec_.std = pre.at("std").num();
  const Json& canon = pre.at("canonical_side");
  spec_.canonical_side = canon.kind == Json::Kind::Null ? "" : canon.str();

  for (const Json& f : meta.at("input").at("schema").at("fields").array) {
    Field fld{f.at("name").str(), f.at("kind").str(), f.at("mean").num(), f.at("std").num(),
              f.has("low") ? f.at("low").num() : -1e300, f.has("high") ? f.at("high").num() : 1e300, {}};
    for (const Json& c : f.at("choices").array) fld.choices.push_back(c.str());
    fields_.push_back(fld);
  }

  // The OpenVINO int8 variant, as the Python runtime picks by default.
  const Json* chosen = nullptr;
  for (const auto& [name, v] : meta.at("variants").object) {
    if (v.at("runtime").str() == "openvino" && v.at("precision").str() == "int8") {
      chosen = &v;
      variant_ = name;
      break;
    }
  }
  if (!chosen) throw std::runtime_error("bundle " + dir + " has no OpenVINO int8 variant");

  // Every file the variant uses must be listed with its sha256, and match it.
  const Json& digests = meta.at("files");
  for (const Json& f : chosen->at("files").array) {
    const std::string& rel = f.str();
    if (!digests.has(rel))
      throw std::runtime_error("file " + rel + " is not listed with a sha256 in bundle " + dir);
    std::string got = sha256_file(dir + "/" + rel);
    if (got != digests.at(rel).str())
      throw std::runtime_error("checksum mismatch for file " + rel + " in bundle " + dir +
                               "; the file changed after export — re-export the bundle");
  }

  auto model = core_.read_model(dir + "/" + chosen->at("file").str());
  ov::AnyMap config{ov::hint::inference_precision(ov::element::f32)};
  if (threads > 0) config.emplace(ov::inference_num_threads(threads));
  compiled_ = core_.compile_model(model, "CPU", config);
}

void Bundle::encode(const Case& c, std::vector<float>& values, std::vector<float>& present) const {
  values.assign(fields_.size(), 0.f);
  present.assign(fields_.size(), 0.f);
  for (size_t i = 0; i < fields_.size(); ++i) {
    const Field& f = fields_[i];
    double x;
    if (f.name == "age_xray" || f.name == "age_bmd") {  // the DXA age is the X-ray age "now"
      if (c.age < f.low || c.age > f.high)
        throw std::runtime_error("age " + std::to_string(c.age) + " is outside the model's range");
      x = c.age;
    } else if (f.name == "sex") {
      auto it = std::find(f.choices.begin(), f.choices.end(), c.sex);
      if (it == f.choices.end()) throw std::runtime_error("sex '" + c.sex + "' is not F or M");
      x = static_cast<double>(it - f.choices.begin());
    } else {
      continue;  // optional facts this example does not take: missing (value 0, present 0)
    }
    values[i] = static_cast<float>((x - f.mean) / f.std);
    present[i] = 1.f;
  }
}

double Bundle::predict(const Image& image, const Case& c) {
  std::vector<float> pixels = preprocess(image, spec_, c.side, c.select);
  std::vector<float> values, present;
  encode(c, values, present);
  const size_t s = static_cast<size_t>(spec_.size), n = fields_.size();
  ov::InferRequest req = compiled_.create_infer_request();
  req.set_tensor("image", ov::Tensor(ov::element::f32, {1, 1, s, s}, pixels.data()));
  req.set_tensor("values", ov::Tensor(ov::element::f32, {1, n}, values.data()));
  req.set_tensor("present", ov::Tensor(ov::element::f32, {1, n}, present.data()));
  req.infer();
  return static_cast<double>(req.get_tensor("bmd").data<float>()[0]);
}

}  // namespace bmd
