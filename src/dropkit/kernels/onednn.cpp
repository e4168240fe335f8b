// The oneDNN plumbing of kernels/onednn.h: engine, per-thread scratchpad and operand buffers,
// single-threaded execution, layout moves and the example grid's block sizes.
#include "dropkit/kernels/onednn.h"

#include "dropkit/kernels/conv.h"
#include "dropkit/kernels/gemm.h"

namespace dropkit::kernels {

using dnnl::memory;

const dnnl::engine& cpu() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::primitive_attr attr_with(const dnnl::post_ops& ops) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attr.set_post_ops(ops);
  return attr;
}

void* thread_bytes(std::size_t bytes, int slot) {
  thread_local std::vector<std::byte> buffers[4];
  auto& buffer = buffers[slot];
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

memory wrap(const memory::desc& md, const void* data) {
  return memory(md, cpu(), const_cast<void*>(data));
}

void execute(const dnnl::primitive& p, const dnnl::primitive_desc_base& pd,
             std::unordered_map<int, memory> args) {
  use_one_onednn_thread();
  thread_local dnnl::stream stream(cpu());
  const memory::desc scratch = pd.scratchpad_desc();
  args.emplace(DNNL_ARG_SCRATCHPAD, wrap(scratch, thread_bytes(scratch.get_size())));
  p.execute(stream, args);
  stream.wait();
}

Relayout::Relayout(const memory::desc& from, const memory::desc& to) {
  if (from == to) return;
  pd = dnnl::reorder::primitive_desc(cpu(), from, cpu(), to, attr_with());
  prim = dnnl::reorder(pd);
  needed = true;
}

void Relayout::run(const void* from, void* to) const {
  execute(prim, pd,
          {{DNNL_ARG_FROM, wrap(pd.src_desc(), from)}, {DNNL_ARG_TO, wrap(pd.dst_desc(), to)}});
}

const void* Relayout::in(const void* plain, int slot) const {
  if (!needed) return plain;
  void* moved = thread_bytes(pd.dst_desc().get_size(), slot);
  run(plain, moved);
  return moved;
}

std::vector<std::int64_t> block_sizes(std::int64_t n) {
  std::vector<std::int64_t> sizes;
  if (n >= kExampleBlock) sizes.push_back(kExampleBlock);
  if (n % kExampleBlock != 0) sizes.push_back(n % kExampleBlock);
  return sizes;
}

}  // namespace dropkit::kernels
