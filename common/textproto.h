// Reads a protobuf text-format file with errors that name file:line:column.
#ifndef PASSERELLE_COMMON_TEXTPROTO_H_
#define PASSERELLE_COMMON_TEXTPROTO_H_

#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/message.h"
#include "google/protobuf/text_format.h"

namespace passerelle {

namespace internal {
class TextProtoErrors : public google::protobuf::io::ErrorCollector {
 public:
  explicit TextProtoErrors(std::string file) : file_(std::move(file)) {}
  void AddError(int line, int column, const std::string& message) override {
    if (!errors_.empty()) errors_ += "\n";
    absl::StrAppend(&errors_, file_, ":", line + 1, ":", column + 1, ": ",
                    message);
  }
  void AddWarning(int line, int column, const std::string& message) override {
    AddError(line, column, message);
  }
  const std::string& errors() const { return errors_; }

 private:
  std::string file_;
  std::string errors_;
};
}  // namespace internal

// Parses `text` (named `name` in errors) into `message`.
inline absl::Status ParseTextProto(const std::string& text,
                                   const std::string& name,
                                   google::protobuf::Message* message) {
  internal::TextProtoErrors errors(name);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, message)) {
    return absl::InvalidArgumentError(
        errors.errors().empty() ? name + ": cannot parse" : errors.errors());
  }
  return absl::OkStatus();
}

inline absl::Status LoadTextProtoFile(const std::string& path,
                                      google::protobuf::Message* message) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseTextProto(buffer.str(), path, message);
}

}  // namespace passerelle

#endif  // PASSERELLE_COMMON_TEXTPROTO_H_
