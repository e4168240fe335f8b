// Internal to kernels/: how the convolution and pooling primitives (kernels/conv.cpp) are run.
// The CPU engine; primitives with a user scratchpad in per-thread buffers, executed on the
// calling thread; Relayout, which moves an operand between our plain layout and a primitive's
// own; and the block sizes of the fixed example grid (kernels/conv.h says why there is one).
// Only kernels/*.cpp include this: oneDNN's headers stay out of the library's interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

namespace dropkit::kernels {

const dnnl::engine& cpu();

// Primitives get their scratch memory from us (a per-thread buffer), not from oneDNN: the
// library's own scratchpad is not safe for one primitive running on several threads at once.
dnnl::primitive_attr attr_with(const dnnl::post_ops& ops = {});

// The calling thread's byte buffers, reused from call to call: slot 0 is the primitives'
// scratchpad, 1-3 hold one grid block's operands in a primitive's own layout.
void* thread_bytes(std::size_t bytes, int slot = 0);

dnnl::memory wrap(const dnnl::memory::desc& md, const void* data);

// Runs one primitive on the calling thread, to completion.
void execute(const dnnl::primitive& p, const dnnl::primitive_desc_base& pd,
             std::unordered_map<int, dnnl::memory> args);

// A reorder between our plain layout and a primitive's own (blocked) one: nothing when they agree.
struct Relayout {
  dnnl::reorder::primitive_desc pd;
  dnnl::reorder prim;
  bool needed = false;

  Relayout() = default;
  Relayout(const dnnl::memory::desc& from, const dnnl::memory::desc& to);
  // Moves `from` (laid out as the source desc) to `to`, on the calling thread.
  void run(const void* from, void* to) const;
  // Where the primitive reads this operand: `plain` itself, or `plain` moved into the thread's
  // buffer `slot`.
  const void* in(const void* plain, int slot) const;
  // Where the primitive writes a result whose plain home is `plain`: itself, or the thread's
  // buffer `slot` (then out() moves it home).
  void* target(void* plain, int slot) const {
    return needed ? thread_bytes(pd.src_desc().get_size(), slot) : plain;
  }
  void out(const void* written, void* plain) const {
    if (needed) run(written, plain);
  }
};

// The block sizes a batch of n examples is cut into: kExampleBlock and the remainder.
std::vector<std::int64_t> block_sizes(std::int64_t n);

}  // namespace dropkit::kernels
