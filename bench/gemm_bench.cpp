// oneDNN against OpenBLAS for the matrix products of training (Google Benchmark).
// Shapes are the default network's at batch 128: forward Y[B,out] = X[B,in] W[out,in]^T,
// backward dX[B,in] = dY[B,out] W[out,in], dW[out,in] = dY[B,out]^T X[B,in].
// Each is run single-threaded (how dropkit calls it, one row block per pool thread) and, for
// reference, with the library's own threads. Counters report GFLOP/s.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <vector>

namespace {

enum Product { kForward, kBackwardData, kBackwardWeights };

template <bool kDnnl>
void BM_gemm(benchmark::State& state) {
  const int product = static_cast<int>(state.range(0));
  const int b = static_cast<int>(state.range(1)), in = static_cast<int>(state.range(2)),
            out = static_cast<int>(state.range(3));
  const int threads = static_cast<int>(state.range(4));
  openblas_set_num_threads(threads);
  omp_set_num_threads(threads);
  std::vector<float> x(b * in, 0.5f), w(out * in, 0.25f), y(b * out, 0.0f), dy(b * out, 0.1f),
      dx(b * in), dw(out * in);
  for (auto _ : state) {
    if (kDnnl) {
      // dnnl_sgemm is row-major: C[M,N] = A[M,K] B[K,N] with transposes.
      if (product == kForward)
        dnnl_sgemm('N', 'T', b, out, in, 1.0f, x.data(), in, w.data(), in, 0.0f, y.data(), out);
      else if (product == kBackwardData)
        dnnl_sgemm('N', 'N', b, in, out, 1.0f, dy.data(), out, w.data(), in, 0.0f, dx.data(), in);
      else
        dnnl_sgemm('T', 'N', out, in, b, 1.0f, dy.data(), out, x.data(), in, 1.0f, dw.data(), in);
    } else {
      if (product == kForward)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, out, in, 1.0f, x.data(), in,
                    w.data(), in, 0.0f, y.data(), out);
      else if (product == kBackwardData)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, in, out, 1.0f, dy.data(), out,
                    w.data(), in, 0.0f, dx.data(), in);
      else
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, b, 1.0f, dy.data(), out,
                    x.data(), in, 1.0f, dw.data(), in);
    }
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * b * in * out * state.iterations() / 1e9,
                                                benchmark::Counter::kIsRate);
}

void shapes(benchmark::internal::Benchmark* bm) {
  for (int threads : {1, 2}) {
    for (int p : {kForward, kBackwardData, kBackwardWeights}) {
      bm->Args({p, 128, 1024, 1024, threads});
      bm->Args({p, 128, 784, 1024, threads});
      bm->Args({p, 64, 1024, 1024, threads});  // one thread's half of the batch
    }
  }
  bm->ArgNames({"product", "batch", "in", "out", "threads"});
}

BENCHMARK(BM_gemm<true>)->Name("dnnl_sgemm")->Apply(shapes)->UseRealTime();
BENCHMARK(BM_gemm<false>)->Name("openblas_sgemm")->Apply(shapes)->UseRealTime();

}  // namespace
