// cuBLAS is opened on first use, not linked (engine/cublas_api.h). On the real toolkit these run
// without a GPU: opening the library and resolving its entry points needs no device.
#ifdef KILN_WITH_CUDA
#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <vector>

#include "engine/cublas_api.h"
#include "engine/device.h"
#include "engine/error.h"

namespace kiln {
namespace {

std::string error_of(const std::vector<std::string>& libs) {
  try {
    load_cublas(libs);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CublasApi, OpensTheLibraryAndResolvesEveryEntryPoint) {
  const CublasApi& a = cublas_api();
  for (const void* f :
       {reinterpret_cast<const void*>(a.create), reinterpret_cast<const void*>(a.destroy),
        reinterpret_cast<const void*>(a.set_stream), reinterpret_cast<const void*>(a.set_workspace),
        reinterpret_cast<const void*>(a.set_math_mode), reinterpret_cast<const void*>(a.sgemm),
        reinterpret_cast<const void*>(a.status_string)})
    EXPECT_NE(f, nullptr);
  // Each pointer is the function it is named for: the status text, and a handle only where a
  // device answers.
  ASSERT_NE(a.status_string(CUBLAS_STATUS_NOT_INITIALIZED), nullptr);
  std::string text = a.status_string(CUBLAS_STATUS_NOT_INITIALIZED);  // the library's words
  for (char& c : text) c = c == '_' ? ' ' : static_cast<char>(std::tolower(c));
  EXPECT_NE(text.find("not initialized"), std::string::npos) << text;
  EXPECT_EQ(&cublas_api(), &a);  // loaded once
#ifndef KILN_CUDA_EMU
  cublasHandle_t h = nullptr;
  const cublasStatus_t s = a.create(&h);
  if (cuda_available()) {
    EXPECT_EQ(s, CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(a.set_math_mode(h, CUBLAS_DEFAULT_MATH), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(a.destroy(h), CUBLAS_STATUS_SUCCESS);
  } else {
    EXPECT_NE(s, CUBLAS_STATUS_SUCCESS);
  }
#endif
}

#ifndef KILN_CUDA_EMU
TEST(CublasApi, ALibraryThatDoesNotLoadOrIsNotCublasIsNamed) {
  const std::string none = error_of({"/nonexistent/libcublas.so.99", "libkiln-no-such-lib.so"});
  EXPECT_NE(none.find("cuBLAS could not be loaded"), std::string::npos) << none;
  EXPECT_NE(none.find("/nonexistent/libcublas.so.99"), std::string::npos) << none;
  EXPECT_NE(none.find("libkiln-no-such-lib.so"), std::string::npos) << none;
  EXPECT_NE(none.find("LD_LIBRARY_PATH"), std::string::npos) << none;
  // The first that opens is the one used: here the C library, which has no cuBLAS in it.
  const std::string wrong = error_of({"/nonexistent/libcublas.so.99", "libc.so.6"});
  EXPECT_NE(wrong.find("libc.so.6: has no cublasCreate_v2"), std::string::npos) << wrong;
}
#endif

}  // namespace
}  // namespace kiln
#endif  // KILN_WITH_CUDA
