// Recursive-descent JSON parser for bundle.json; see json.hpp.
#include "json.hpp"

#include <cstdlib>
#include <stdexcept>

namespace bmd {
namespace {

class Parser {
 public:
  explicit Parser(const std::string& t) : t_(t) {}

  Json document() {
    Json v = value();
    skip();
    if (i_ != t_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("bundle.json: " + what + " at byte " + std::to_string(i_));
  }
  void skip() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\n' || t_[i_] == '\r' || t_[i_] == '\t')) ++i_;
  }
  bool eat(char c) {
    skip();
    if (i_ < t_.size() && t_[i_] == c) { ++i_; return true; }
    return false;
  }
  void expect(char c) { if (!eat(c)) fail(std::string("expected '") + c + "'"); }

  Json value() {
    skip();
    if (i_ >= t_.size()) fail("unexpected end");
    char c = t_[i_];
    Json v;
    if (c == '{') {
      ++i_;
      v.kind = Json::Kind::Object;
      if (eat('}')) return v;
      do {
        skip();
        std::string key = string_literal();
        expect(':');
        v.object[key] = value();
      } while (eat(','));
      expect('}');
    } else if (c == '[') {
      ++i_;
      v.kind = Json::Kind::Array;
      if (eat(']')) return v;
      do { v.array.push_back(value()); } while (eat(','));
      expect(']');
    } else if (c == '"') {
      v.kind = Json::Kind::String;
      v.string = string_literal();
    } else if (t_.compare(i_, 4, "true") == 0) {
      i_ += 4; v.kind = Json::Kind::Bool; v.boolean = true;
    } else if (t_.compare(i_, 5, "false") == 0) {
      i_ += 5; v.kind = Json::Kind::Bool;
    } else if (t_.compare(i_, 4, "null") == 0) {
      i_ += 4;
    } else {
      const char* start = t_.c_str() + i_;
      char* end = nullptr;
      v.number = std::strtod(start, &end);
      if (end == start) fail("invalid value");
      i_ += static_cast<size_t>(end - start);
      v.kind = Json::Kind::Number;
    }
    return v;
  }

  void utf8(unsigned cp, std::string& out) {
    if (cp < 0x80) { out += char(cp); }
    else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
    }
  }

  unsigned hex4() {
    if (i_ + 4 > t_.size()) fail("short \\u escape");
    unsigned cp = std::stoul(t_.substr(i_, 4), nullptr, 16);
    i_ += 4;
    return cp;
  }

  std::string string_literal() {
    if (i_ >= t_.size() || t_[i_] != '"') fail("expected a string");
    ++i_;
    std::string out;
    while (i_ < t_.size() && t_[i_] != '"') {
      char c = t_[i_++];
      if (c != '\\') { out += c; continue; }
      if (i_ >= t_.size()) fail("unterminated escape");
      char e = t_[i_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && t_.compare(i_, 2, "\\u") == 0) {
            i_ += 2;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4() - 0xDC00);
          }
          utf8(cp, out);
          break;
        }
        default: out += e;  // \" \\ \/
      }
    }
    if (i_ >= t_.size()) fail("unterminated string");
    ++i_;
    return out;
  }

  const std::string& t_;
  size_t i_ = 0;
};

}  // namespace

const Json& Json::at(const std::string& key) const {
  if (kind != Kind::Object) throw std::runtime_error("bundle.json: '" + key + "' looked up in a non-object");
  auto it = object.find(key);
  if (it == object.end()) throw std::runtime_error("bundle.json: missing key '" + key + "'");
  return it->second;
}

bool Json::has(const std::string& key) const { return kind == Kind::Object && object.count(key) > 0; }

double Json::num() const {
  if (kind != Kind::Number) throw std::runtime_error("bundle.json: expected a number");
  return number;
}

const std::string& Json::str() const {
  if (kind != Kind::String) throw std::runtime_error("bundle.json: expected a string");
  return string;
}

Json parse_json(const std::string& text) { return Parser(text).document(); }

}  // namespace bmd
