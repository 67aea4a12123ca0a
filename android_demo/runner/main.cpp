// edge_runner: time one ExecuTorch program (.pte) outside Python, on this host or on a phone.
//
//   edge_runner --model unet.pte --input latent.f32:2x9x16x16 --input time.f32:1x320
//               [--runs 10] [--warmup 3] [--threads N] [--etdump out.etdp] [--output out.f32]
//
// Inputs are raw float32 little-endian files with their shapes. One load, `warmup` untimed calls
// (the first one reported on its own), `runs` timed calls; then ONE JSON line on stdout:
//   {"load_ms":..., "first_run_ms":..., "runs_ms":[...], "threads":..., "peak_rss_kb":...,
//    "output_shape":[...], "etdump":"path"|null}
// or {"error":"..."} with exit status 1. --etdump records every call (load, warm-up, runs) with
// ExecuTorch's profiler, ops inside the XNNPACK delegate included; --output writes output 0.

#include <executorch/devtools/etdump/etdump_flatcc.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

// The wheel ships libexecutorch_threadpool but not its header: the two entry points used here,
// declared as the library defines them (executorch/extension/threadpool/threadpool.h upstream).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace {

using executorch::extension::Module;
using executorch::extension::TensorPtr;
using executorch::runtime::EValue;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string model;
  std::vector<std::string> inputs;  // "file:AxBxC"
  int runs = 10;
  int warmup = 3;
  int threads = 0;  // 0: the pool's default (the performance cores)
  std::string etdump;
  std::string output;
};

std::string json_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

[[noreturn]] void fail(const std::string& message) {
  std::cout << "{\"error\":\"" << json_escape(message) << "\"}" << std::endl;
  std::exit(1);
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) {
      fail("missing value after " + flag);
    }
    std::string value = argv[++i];
    if (flag == "--model") options.model = value;
    else if (flag == "--input") options.inputs.push_back(value);
    else if (flag == "--runs") options.runs = std::atoi(value.c_str());
    else if (flag == "--warmup") options.warmup = std::atoi(value.c_str());
    else if (flag == "--threads") options.threads = std::atoi(value.c_str());
    else if (flag == "--etdump") options.etdump = value;
    else if (flag == "--output") options.output = value;
    else fail("unknown option " + flag);
  }
  if (options.model.empty() || options.inputs.empty() || options.runs < 1 || options.warmup < 1) {
    fail("usage: edge_runner --model X.pte --input FILE.f32:AxB [--input ...] [--runs N>=1] [--warmup N>=1] "
         "[--threads N] [--etdump OUT] [--output OUT.f32]");
  }
  return options;
}

// "latent.f32:2x9x16x16" -> a float32 tensor of that shape holding the file's bytes.
TensorPtr read_input(const std::string& spec) {
  auto colon = spec.rfind(':');
  if (colon == std::string::npos) fail("input " + spec + ": expected FILE:AxBxC");
  std::string path = spec.substr(0, colon);
  std::vector<executorch::aten::SizesType> shape;
  std::stringstream dims(spec.substr(colon + 1));
  size_t count = 1;
  for (std::string dim; std::getline(dims, dim, 'x');) {
    shape.push_back(std::atoi(dim.c_str()));
    count *= shape.back();
  }
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) fail("input " + path + ": cannot open");
  if (static_cast<size_t>(file.tellg()) != count * sizeof(float)) {
    fail("input " + path + ": " + std::to_string(file.tellg()) + " bytes, shape needs " +
         std::to_string(count * sizeof(float)));
  }
  std::vector<float> data(count);
  file.seekg(0);
  file.read(reinterpret_cast<char*>(data.data()), count * sizeof(float));
  return executorch::extension::make_tensor_ptr(shape, std::move(data));
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// This program's own peak resident memory: VmHWM (Linux and Android). Not getrusage's ru_maxrss,
// which Linux carries over from the parent across fork + exec (a Python parent's peak, here).
long peak_rss_kb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);  // "VmHWM:   12345 kB"
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

void write_etdump(Module& module, const std::string& path) {
  auto* tracer = static_cast<executorch::etdump::ETDumpGen*>(module.event_tracer());
  executorch::etdump::ETDumpResult dump = tracer->get_etdump_data();
  if (dump.buf == nullptr) fail("etdump: nothing recorded");
  std::ofstream file(path, std::ios::binary);
  file.write(static_cast<const char*>(dump.buf), dump.size);
  std::free(dump.buf);
  if (!file) fail("etdump " + path + ": cannot write");
}

void write_output(const EValue& value, const std::string& path) {
  const auto& tensor = value.toTensor();
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(tensor.const_data_ptr<float>()), tensor.numel() * sizeof(float));
  if (!file) fail("output " + path + ": cannot write");
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parse(argc, argv);
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (options.threads > 0) pool->_unsafe_reset_threadpool(options.threads);

  std::unique_ptr<executorch::runtime::EventTracer> tracer;
  if (!options.etdump.empty()) tracer = std::make_unique<executorch::etdump::ETDumpGen>();
  Module module(options.model, Module::LoadMode::Mmap, std::move(tracer));

  auto load_start = Clock::now();
  if (module.load_forward() != executorch::runtime::Error::Ok) fail("cannot load " + options.model);
  double load_ms = ms_since(load_start);

  std::vector<TensorPtr> tensors;  // kept alive while the EValues point at them
  std::vector<EValue> inputs;
  for (const auto& spec : options.inputs) {
    tensors.push_back(read_input(spec));
    inputs.emplace_back(*tensors.back());
  }

  std::vector<EValue> outputs;
  auto call = [&]() {
    auto result = module.forward(inputs);
    if (!result.ok()) fail("forward failed (error " + std::to_string(static_cast<int>(result.error())) + ")");
    outputs = std::move(*result);
  };
  auto first_start = Clock::now();
  call();
  double first_ms = ms_since(first_start);
  for (int i = 1; i < options.warmup; ++i) call();
  std::vector<double> runs_ms;
  for (int i = 0; i < options.runs; ++i) {
    auto start = Clock::now();
    call();
    runs_ms.push_back(ms_since(start));
  }

  if (!options.etdump.empty()) write_etdump(module, options.etdump);
  if (!options.output.empty()) write_output(outputs.at(0), options.output);

  std::ostringstream line;
  line.precision(6);
  line << std::fixed << "{\"load_ms\":" << load_ms << ",\"first_run_ms\":" << first_ms << ",\"runs_ms\":[";
  for (size_t i = 0; i < runs_ms.size(); ++i) line << (i ? "," : "") << runs_ms[i];
  line << "],\"threads\":" << pool->get_thread_count() << ",\"peak_rss_kb\":" << peak_rss_kb()
       << ",\"output_shape\":[";
  const auto& out = outputs.at(0).toTensor();
  for (ssize_t i = 0; i < out.dim(); ++i) line << (i ? "," : "") << out.size(i);
  line << "],\"etdump\":";
  if (options.etdump.empty()) line << "null";
  else line << "\"" << json_escape(options.etdump) << "\"";
  line << "}";
  std::cout << line.str() << std::endl;
  return 0;
}
