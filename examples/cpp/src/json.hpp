// A minimal JSON reader: enough of RFC 8259 for bundle.json (objects, arrays, strings with
// escapes, numbers, true/false/null). No third-party header, so integrators add no dependency.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace bmd {

struct Json {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Json> array;
  std::map<std::string, Json> object;

  // Member `key` of an object; throws std::runtime_error naming `key` when absent or not an object.
  const Json& at(const std::string& key) const;
  bool has(const std::string& key) const;
  double num() const;              // throws unless a number
  const std::string& str() const;  // throws unless a string
};

// Parse a whole document; throws std::runtime_error with the byte offset on malformed input.
Json parse_json(const std::string& text);

}  // namespace bmd
