// edge_runner: time ExecuTorch programs (.pte) outside Python, on this host or on a phone.
//
//   edge_runner --model unet.pte --input latent.f32:2x9x16x16 --input time.f32:1x320 [--output out.f32]
//               [--model decoder.pte --input ...]  [--runs 10] [--warmup 3] [--threads N]
//               [--workspace shared|separate] [--etdump out.etdp]
//
// Each --model opens a program; the --input and --output flags after it are that program's. Inputs
// are raw float32 little-endian files with their shapes; --output writes the program's output 0.
// Every program is loaded first and all stay loaded, as an app holds them; then each in turn gets
// `warmup` untimed calls (the first reported on its own) and `runs` timed calls. With --workspace
// shared (the default) XNNPACK's programs share one activation workspace, sized by the largest, as
// ExecuTorch's Android and iOS builds do; separate gives each program its own. Then ONE JSON line:
//   {"programs":[{"model":..., "load_ms":..., "first_run_ms":..., "runs_ms":[...], "output_shape":[...]}],
//    "threads":..., "workspace":"shared", "loaded_rss_kb":..., "peak_rss_kb":..., "etdump":"path"|null}
// or {"error":"..."} with exit status 1. --etdump (one program only) records every call with
// ExecuTorch's profiler, ops inside the XNNPACK delegate included.

#include <executorch/devtools/etdump/etdump_flatcc.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/backend/options.h>

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

struct Program {
  std::string model;
  std::vector<std::string> inputs;  // "file:AxBxC"
  std::string output;
};

struct Options {
  std::vector<Program> programs;
  int runs = 10;
  int warmup = 3;
  int threads = 0;  // 0: the pool's default (the performance cores)
  std::string workspace = "shared";
  std::string etdump;
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
    if (flag == "--model") options.programs.push_back(Program{value, {}, ""});
    else if ((flag == "--input" || flag == "--output") && options.programs.empty()) fail(flag + " before any --model");
    else if (flag == "--input") options.programs.back().inputs.push_back(value);
    else if (flag == "--output") options.programs.back().output = value;
    else if (flag == "--runs") options.runs = std::atoi(value.c_str());
    else if (flag == "--warmup") options.warmup = std::atoi(value.c_str());
    else if (flag == "--threads") options.threads = std::atoi(value.c_str());
    else if (flag == "--workspace") options.workspace = value;
    else if (flag == "--etdump") options.etdump = value;
    else fail("unknown option " + flag);
  }
  bool every_program_has_inputs = !options.programs.empty();
  for (const auto& program : options.programs) every_program_has_inputs &= !program.inputs.empty();
  if (!every_program_has_inputs || options.runs < 1 || options.warmup < 1) {
    fail("usage: edge_runner --model X.pte --input FILE.f32:AxB [--input ...] [--output OUT.f32] [--model ...] "
         "[--runs N>=1] [--warmup N>=1] [--threads N] [--workspace shared|separate] [--etdump OUT]");
  }
  if (options.workspace != "shared" && options.workspace != "separate") {
    fail("--workspace " + options.workspace + ": expected shared or separate");
  }
  if (!options.etdump.empty() && options.programs.size() > 1) fail("--etdump records one program: give one --model");
  return options;
}

// XNNPACK's workspace sharing, set before any program loads (keys of backends/xnnpack/runtime/XNNPACKBackend.h):
// 2 = one workspace for every program, 0 = one per delegate instance.
void set_workspace_sharing(const std::string& workspace) {
  executorch::runtime::BackendOptions<1> xnnpack;
  xnnpack.set_option("workspace_sharing_mode", workspace == "shared" ? 2 : 0);
  if (executorch::runtime::set_option("XnnpackBackend", xnnpack.view()) != executorch::runtime::Error::Ok) {
    fail("cannot set the XNNPACK workspace sharing mode");
  }
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

// One of this program's memory figures from /proc/self/status (Linux and Android), in kB:
// "VmHWM:" (the peak resident set) or "VmRSS:" (now). Not getrusage's ru_maxrss, which Linux
// carries over from the parent across fork + exec (a Python parent's peak, here).
long status_kb(const std::string& field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(field, 0) == 0) return std::atol(line.c_str() + field.size());  // "VmHWM:   12345 kB"
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

// One loaded program with its inputs, and what its calls measured.
struct Loaded {
  const Program& program;
  std::unique_ptr<Module> module;
  std::vector<TensorPtr> tensors;  // kept alive while the EValues point at them
  std::vector<EValue> inputs;
  std::vector<EValue> outputs;
  double load_ms = 0;
  double first_ms = 0;
  std::vector<double> runs_ms;
};

void call(Loaded& loaded) {
  auto result = loaded.module->forward(loaded.inputs);
  if (!result.ok()) {
    fail(loaded.program.model + ": forward failed (error " + std::to_string(static_cast<int>(result.error())) + ")");
  }
  loaded.outputs = std::move(*result);
}

void run(Loaded& loaded, const Options& options) {
  auto first_start = Clock::now();
  call(loaded);
  loaded.first_ms = ms_since(first_start);
  for (int i = 1; i < options.warmup; ++i) call(loaded);
  for (int i = 0; i < options.runs; ++i) {
    auto start = Clock::now();
    call(loaded);
    loaded.runs_ms.push_back(ms_since(start));
  }
}

std::string program_json(const Loaded& loaded) {
  std::ostringstream line;
  line.precision(6);
  line << std::fixed << "{\"model\":\"" << json_escape(loaded.program.model) << "\",\"load_ms\":" << loaded.load_ms
       << ",\"first_run_ms\":" << loaded.first_ms << ",\"runs_ms\":[";
  for (size_t i = 0; i < loaded.runs_ms.size(); ++i) line << (i ? "," : "") << loaded.runs_ms[i];
  line << "],\"output_shape\":[";
  const auto& out = loaded.outputs.at(0).toTensor();
  for (ssize_t i = 0; i < out.dim(); ++i) line << (i ? "," : "") << out.size(i);
  line << "]}";
  return line.str();
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parse(argc, argv);
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (options.threads > 0) pool->_unsafe_reset_threadpool(options.threads);
  set_workspace_sharing(options.workspace);

  std::vector<Loaded> programs;
  programs.reserve(options.programs.size());
  for (const auto& program : options.programs) {
    std::unique_ptr<executorch::runtime::EventTracer> tracer;
    if (!options.etdump.empty()) tracer = std::make_unique<executorch::etdump::ETDumpGen>();
    Loaded& loaded = programs.emplace_back(
        Loaded{program, std::make_unique<Module>(program.model, Module::LoadMode::Mmap, std::move(tracer))});
    auto load_start = Clock::now();
    if (loaded.module->load_forward() != executorch::runtime::Error::Ok) fail("cannot load " + program.model);
    loaded.load_ms = ms_since(load_start);
    for (const auto& spec : program.inputs) {
      loaded.tensors.push_back(read_input(spec));
      loaded.inputs.emplace_back(*loaded.tensors.back());
    }
  }
  long loaded_rss_kb = status_kb("VmRSS:");

  for (auto& loaded : programs) {
    run(loaded, options);
    if (!loaded.program.output.empty()) write_output(loaded.outputs.at(0), loaded.program.output);
  }
  if (!options.etdump.empty()) write_etdump(*programs.front().module, options.etdump);

  std::ostringstream line;
  line << "{\"programs\":[";
  for (size_t i = 0; i < programs.size(); ++i) line << (i ? "," : "") << program_json(programs[i]);
  line << "],\"threads\":" << pool->get_thread_count() << ",\"workspace\":\"" << options.workspace
       << "\",\"loaded_rss_kb\":" << loaded_rss_kb << ",\"peak_rss_kb\":" << status_kb("VmHWM:") << ",\"etdump\":";
  if (options.etdump.empty()) line << "null";
  else line << "\"" << json_escape(options.etdump) << "\"";
  line << "}";
  std::cout << line.str() << std::endl;
  return 0;
}
