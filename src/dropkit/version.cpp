#include "dropkit/version.h"

namespace dropkit {

const char* version() {
  return kVersion;
}

}  // namespace dropkit
