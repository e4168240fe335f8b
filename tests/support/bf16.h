// Tests of bf16 products run only where oneDNN offers them (kernels/gemm.h: it needs AVX-512);
// elsewhere they are skipped with the reason, and Trainer.Bf16IsRefusedWhereOneDnnHasNone checks
// the refusal instead.
#pragma once

#include <gtest/gtest.h>

#include "dropkit/kernels/gemm.h"

#define DROPKIT_REQUIRE_BF16()                                                   \
  do {                                                                           \
    if (!::dropkit::kernels::bf16_products_available())                          \
      GTEST_SKIP() << "oneDNN has no bf16 products on this CPU (needs AVX-512)"; \
  } while (0)
