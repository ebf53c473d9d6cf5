#include "server/service/http_image_request.h"

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace rectifier::service {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::StatusOr<std::string> Unescape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%') {
      const int hi = i + 2 < text.size() ? HexDigit(text[i + 1]) : -1;
      const int lo = i + 2 < text.size() ? HexDigit(text[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("malformed %-escape in the query string near '", text.substr(i, 3), "'"));
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

// The value of a multipart header parameter (boundary="x"; filename=x).
std::string HeaderParameter(absl::string_view header, absl::string_view name) {
  for (absl::string_view piece : absl::StrSplit(header, ';')) {
    piece = absl::StripAsciiWhitespace(piece);
    if (piece.size() <= name.size() || !absl::StartsWithIgnoreCase(piece, name) ||
        piece[name.size()] != '=') {
      continue;
    }
    absl::string_view value = piece.substr(name.size() + 1);
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return std::string(value);
  }
  return "";
}

template <typename T>
absl::Status ParseNumber(const std::string& name, const std::string& value, T* out) {
  bool ok = false;
  if constexpr (std::is_same_v<T, float>) {
    ok = absl::SimpleAtof(value, out) && std::isfinite(*out);
  } else {
    ok = absl::SimpleAtoi(value, out);
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "query parameter ", name, "='", value.substr(0, 64), "' is not ",
        std::is_same_v<T, float> ? "a finite number" : "an unsigned integer in range"));
  }
  return absl::OkStatus();
}

// Parameters both image routes take; false when `name` is not one of them.
template <typename Request>
absl::StatusOr<bool> ApplyCommonQuery(const std::string& name, const std::string& value,
                                      Request* request) {
  if (name == "priority") {
    uint64_t v = 0;
    if (absl::Status s = ParseNumber(name, value, &v); !s.ok()) return s;
    request->set_priority(v);
    return true;
  }
  if (name == "timeout_us") {
    uint64_t v = 0;
    if (absl::Status s = ParseNumber(name, value, &v); !s.ok()) return s;
    request->set_timeout_us(v);
    return true;
  }
  if (name == "id") {
    request->set_id(value);
    return true;
  }
  return false;
}

absl::Status UnknownQuery(const std::string& name, const char* known) {
  return absl::InvalidArgumentError(absl::StrCat("unknown query parameter '", name.substr(0, 64),
                                                 "' (this route takes ", known, ")"));
}

}  // namespace

absl::StatusOr<std::vector<HttpImagePart>> ParseImageBody(absl::string_view content_type,
                                                          absl::string_view body) {
  if (body.empty()) {
    return absl::InvalidArgumentError(
        "the request body is empty; send the image as the body, or several as "
        "multipart/form-data");
  }
  std::vector<HttpImagePart> parts;
  if (!absl::StartsWithIgnoreCase(absl::StripLeadingAsciiWhitespace(content_type),
                                  "multipart/form-data")) {
    parts.push_back({"", body});
    return parts;
  }
  const std::string boundary = HeaderParameter(content_type, "boundary");
  if (boundary.empty() || boundary.size() > 200) {
    return absl::InvalidArgumentError("multipart/form-data without a usable boundary parameter");
  }
  const std::string delimiter = "--" + boundary;
  size_t at = body.find(delimiter);
  if (at == absl::string_view::npos) {
    return absl::InvalidArgumentError("the multipart body has no '--" + boundary + "' line");
  }
  for (;;) {
    at += delimiter.size();
    if (body.substr(at, 2) == "--") break;  // the closing delimiter
    const size_t line_end = body.find("\r\n", at);
    if (line_end == absl::string_view::npos) {
      return absl::InvalidArgumentError("the multipart body ends inside a boundary line");
    }
    const size_t headers_end = body.find("\r\n\r\n", line_end);
    if (headers_end == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("multipart part ", parts.size(), " has no blank line after its headers"));
    }
    const absl::string_view headers = body.substr(line_end + 2, headers_end - line_end - 2);
    const size_t data_start = headers_end + 4;
    const size_t next = body.find("\r\n" + delimiter, data_start);
    if (next == absl::string_view::npos) {
      return absl::InvalidArgumentError("the multipart body has no closing boundary ('--" +
                                        boundary + "--')");
    }
    std::string filename;
    for (absl::string_view header : absl::StrSplit(headers, "\r\n")) {
      if (absl::StartsWithIgnoreCase(header, "content-disposition:")) {
        filename = HeaderParameter(header, "filename");
        if (filename.empty()) filename = HeaderParameter(header, "name");
      }
    }
    if (next > data_start) parts.push_back({filename, body.substr(data_start, next - data_start)});
    at = next + 2;
  }
  if (parts.empty()) return absl::InvalidArgumentError("the multipart body holds no images");
  return parts;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseQuery(
    absl::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  for (absl::string_view item : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    const size_t eq = item.find('=');
    absl::StatusOr<std::string> name = Unescape(item.substr(0, eq));
    if (!name.ok()) return name.status();
    absl::StatusOr<std::string> value =
        Unescape(eq == absl::string_view::npos ? absl::string_view() : item.substr(eq + 1));
    if (!value.ok()) return value.status();
    out.emplace_back(*std::move(name), *std::move(value));
  }
  return out;
}

absl::Status ApplyClassifyQuery(const std::vector<std::pair<std::string, std::string>>& query,
                                rectifier::v1::ClassifyRequest* request) {
  for (const auto& [name, value] : query) {
    absl::StatusOr<bool> common = ApplyCommonQuery(name, value, request);
    if (!common.ok()) return common.status();
    if (*common) continue;
    if (name == "top_k") {
      uint32_t v = 0;
      if (absl::Status s = ParseNumber(name, value, &v); !s.ok()) return s;
      request->set_top_k(v);
    } else if (name == "threshold") {
      float v = 0;
      if (absl::Status s = ParseNumber(name, value, &v); !s.ok()) return s;
      request->set_threshold(v);
    } else {
      return UnknownQuery(name, "top_k, threshold, priority, timeout_us, id");
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyDetectQuery(const std::vector<std::pair<std::string, std::string>>& query,
                              rectifier::v1::DetectRequest* request) {
  for (const auto& [name, value] : query) {
    absl::StatusOr<bool> common = ApplyCommonQuery(name, value, request);
    if (!common.ok()) return common.status();
    if (*common) continue;
    if (name == "score_threshold" || name == "iou_threshold") {
      float v = 0;
      if (absl::Status s = ParseNumber(name, value, &v); !s.ok()) return s;
      name == "score_threshold" ? request->set_score_threshold(v) : request->set_iou_threshold(v);
    } else if (name == "max_detections") {
      uint32_t v = 0;
      if (absl::Status s = ParseNumber(name, value, &v); !s.ok()) return s;
      request->set_max_detections(v);
    } else if (name == "classes") {
      for (absl::string_view id : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        uint32_t v = 0;
        if (absl::Status s = ParseNumber(name, std::string(id), &v); !s.ok()) return s;
        if (request->class_filter_size() >= 4096) {
          return absl::InvalidArgumentError("query parameter classes lists more than 4096 ids");
        }
        request->add_class_filter(v);
      }
    } else {
      return UnknownQuery(name,
                          "score_threshold, iou_threshold, max_detections, classes, priority, "
                          "timeout_us, id");
    }
  }
  return absl::OkStatus();
}

absl::Status ApplySegmentQuery(const std::vector<std::pair<std::string, std::string>>& query,
                               rectifier::v1::SegmentRequest* request) {
  for (const auto& [name, value] : query) {
    absl::StatusOr<bool> common = ApplyCommonQuery(name, value, request);
    if (!common.ok()) return common.status();
    if (*common) continue;
    if (name == "min_score") {
      float v = 0;
      if (absl::Status s = ParseNumber(name, value, &v); !s.ok()) return s;
      request->set_min_score(v);
    } else if (name == "probabilities") {
      if (value == "all") {
        request->set_all_probabilities(true);
        continue;
      }
      for (absl::string_view id : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        uint32_t v = 0;
        if (absl::Status s = ParseNumber(name, std::string(id), &v); !s.ok()) return s;
        if (request->probability_classes_size() >= 4096) {
          return absl::InvalidArgumentError(
              "query parameter probabilities lists more than 4096 ids");
        }
        request->add_probability_classes(v);
      }
    } else {
      return UnknownQuery(name, "probabilities, min_score, priority, timeout_us, id");
    }
  }
  return absl::OkStatus();
}

}  // namespace rectifier::service
