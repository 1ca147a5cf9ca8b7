// Hugging Face config.json -> ModelConfig.
#pragma once
#include <string>

#include "model/config.h"

namespace whale {

// Parses a config.json text; `source` names the file in errors. Unknown architectures,
// wrong field types and inconsistent values are errors that name the field.
ModelConfig parse_hf_config(const std::string& json_text, const std::string& source);
ModelConfig load_hf_config(const std::string& model_dir);  // reads MODEL_DIR/config.json

}  // namespace whale
