#include "trainer/models/state_dict.h"

#include <caffe2/serialize/in_memory_adapter.h>
#include <caffe2/serialize/inline_container.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <torch/utils.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

namespace xfer::trainer::models {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// LibTorch's unpickler turns every `collections.OrderedDict` into None (it
// expects them only as a tensor's unused backward hooks) and lacks SETITEM,
// so it cannot read what Python's torch.save(model.state_dict()) writes: an
// OrderedDict whose `_metadata` attribute holds one-item dicts. This rewrites
// the pickle (protocol 2, as torch.save writes) into one LibTorch reads:
// OrderedDict() becomes an empty dict, BUILD (setting `_metadata`) and the
// ops that built its state are dropped, and SETITEM becomes MARK key value SETITEMS. It tracks
// where each stack item starts in the output so the MARK can be put before the key. Returns nullopt
// when there is nothing to rewrite or an opcode it does not know, leaving the error to pickle_load.
std::optional<std::string> rewrite_ordered_dicts(const char* data, size_t size) {
  std::string out;
  out.reserve(size + size / 8);
  struct Item {
    size_t start;  // offset in `out` of the ops that produced it
    bool mark;
  };
  std::vector<Item> stack;
  size_t pos = 0;
  bool changed = false;
  bool class_on_stack = false;  // the OrderedDict class would be on top
  std::set<uint32_t> class_memo;
  auto need = [&](size_t n) { return pos + n <= size; };
  auto read_u32 = [&](size_t at) {
    uint32_t v;
    std::memcpy(&v, data + at, 4);
    return v;
  };
  auto pop = [&](size_t n) -> std::optional<size_t> {
    if (stack.size() < n) return std::nullopt;
    const size_t start = stack[stack.size() - n].start;
    stack.resize(stack.size() - n);
    return start;
  };
  auto pop_to_mark = [&]() -> std::optional<size_t> {
    while (!stack.empty() && !stack.back().mark) stack.pop_back();
    if (stack.empty()) return std::nullopt;
    const size_t start = stack.back().start;
    stack.pop_back();
    return start;
  };
  while (pos < size) {
    const auto op = static_cast<unsigned char>(data[pos]);
    const size_t start = pos++;
    const size_t out_start = out.size();
    size_t arg = 0;  // argument bytes after the opcode
    int pushes = 0;  // stack effect, applied after copying the op
    int pops = 0;
    switch (op) {
      case 'c': {  // GLOBAL module\nname\n
        const char* end1 = static_cast<const char*>(std::memchr(data + pos, '\n', size - pos));
        if (!end1) return std::nullopt;
        const char* end2 = static_cast<const char*>(
            std::memchr(end1 + 1, '\n', size - static_cast<size_t>(end1 + 1 - data)));
        if (!end2) return std::nullopt;
        const std::string global(data + pos, static_cast<size_t>(end2 - (data + pos)));
        arg = static_cast<size_t>(end2 + 1 - data) - pos;
        if (global == "collections\nOrderedDict") {
          pos += arg;
          class_on_stack = changed = true;
          continue;
        }
        pushes = 1;
        break;
      }
      case 'q':
      case 'r':
      case 'h':
      case 'j': {  // BINPUT, LONG_BINPUT, BINGET, LONG_BINGET
        arg = (op == 'q' || op == 'h') ? 1 : 4;
        if (!need(arg)) return std::nullopt;
        const uint32_t index = arg == 1 ? static_cast<unsigned char>(data[pos]) : read_u32(pos);
        const bool put = op == 'q' || op == 'r';
        if (put && class_on_stack) {
          class_memo.insert(index);
          pos += arg;
          continue;
        }
        if (!put && class_memo.count(index)) {
          class_on_stack = true;
          pos += arg;
          continue;
        }
        pushes = put ? 0 : 1;
        break;
      }
      case ')':  // EMPTY_TUPLE; with REDUCE after the class: OrderedDict()
        if (class_on_stack) {
          if (!need(1) || data[pos] != 'R') return std::nullopt;
          ++pos;
          out.push_back('}');
          stack.push_back({out_start, false});
          class_on_stack = false;
          continue;
        }
        pushes = 1;
        break;
      case 'b': {  // BUILD: drop the state (OrderedDict's `_metadata`) and its ops
        const auto state_start = pop(1);
        if (!state_start) return std::nullopt;
        out.resize(*state_start);
        continue;
      }
      case 's': {  // SETITEM -> MARK key value SETITEMS
        const auto key_start = pop(2);
        if (!key_start) return std::nullopt;
        out.insert(*key_start, 1, '(');
        out.push_back('u');
        changed = true;
        continue;
      }
      case 0x80:  // PROTO
        arg = 1;
        break;
      case 'K':
        arg = 1;
        pushes = 1;
        break;
      case 'U':
      case 'C':
      case 0x8a:  // SHORT_BINSTRING, SHORT_BINBYTES, LONG1
        if (!need(1)) return std::nullopt;
        arg = 1 + static_cast<unsigned char>(data[pos]);
        pushes = 1;
        break;
      case 'M':
        arg = 2;
        pushes = 1;
        break;
      case 'J':
        arg = 4;
        pushes = 1;
        break;
      case 'G':
        arg = 8;
        pushes = 1;
        break;
      case 'X':
      case 'T':
      case 'B':
        if (!need(4)) return std::nullopt;
        arg = 4 + static_cast<size_t>(read_u32(pos));
        pushes = 1;
        break;
      case '}':
      case ']':
      case 'N':
      case 0x88:
      case 0x89:
        pushes = 1;
        break;
      case '(':
        out.push_back('(');
        stack.push_back({out_start, true});
        continue;
      case 't': {  // TUPLE: items since the mark become one
        const auto mark_start = pop_to_mark();
        if (!mark_start) return std::nullopt;
        out.push_back('t');
        stack.push_back({*mark_start, false});
        continue;
      }
      case 'u':
      case 'e':
      case '1':  // SETITEMS, APPENDS, POP_MARK
        if (!pop_to_mark()) return std::nullopt;
        break;
      case 0x85:
      case 0x86:
      case 0x87:   // TUPLE1..3
      case 'R':    // REDUCE: callable, args
      case 'a':    // APPEND: list, value
      case 'Q': {  // BINPERSID: pid -> object
        const int n = op == 'R' || op == 'a' ? 2 : op == 'Q' ? 1 : op - 0x84;
        const auto first = pop(static_cast<size_t>(n));
        if (!first) return std::nullopt;
        out.push_back(static_cast<char>(op));
        stack.push_back({*first, false});
        continue;
      }
      case '0':
        pops = 1;
        break;
      case '.':  // STOP
        out.push_back('.');
        if (!changed) return std::nullopt;
        return out;
      default:
        return std::nullopt;
    }
    if (class_on_stack) return std::nullopt;  // the class used some other way
    if (!need(arg)) return std::nullopt;
    if (pops && !pop(static_cast<size_t>(pops))) return std::nullopt;
    pos += arg;
    out.append(data + start, pos - start);
    for (int i = 0; i < pushes; ++i) stack.push_back({out_start, false});
  }
  return std::nullopt;
}

// pickle_load of `bytes` with data.pkl passed through rewrite_ordered_dicts;
// nullopt when the archive has no OrderedDict to rewrite.
std::optional<torch::IValue> load_rewritten(const std::vector<char>& bytes) {
  caffe2::serialize::PyTorchStreamReader reader(
      std::make_shared<caffe2::serialize::MemoryReadAdapter>(bytes.data(), bytes.size()));
  if (!reader.hasRecord("data.pkl")) return std::nullopt;
  auto [pickle, pickle_size] = reader.getRecord("data.pkl");
  const auto rewritten = rewrite_ordered_dicts(static_cast<const char*>(pickle.get()), pickle_size);
  if (!rewritten) return std::nullopt;
  std::vector<char> archive;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) {
      archive.insert(archive.end(), static_cast<const char*>(buf),
                     static_cast<const char*>(buf) + n);
      return n;
    });
    writer.setMinVersion(static_cast<uint64_t>(reader.version()));
    for (const auto& name : reader.getAllRecords()) {
      if (name == "version" || name == ".data/version") continue;  // the writer adds its own
      if (name == "data.pkl") {
        writer.writeRecord(name, rewritten->data(), rewritten->size());
      } else {
        auto [record, record_size] = reader.getRecord(name);
        writer.writeRecord(name, record.get(), record_size);
      }
    }
    writer.writeEndOfFile();
  }
  return torch::pickle_load(archive);
}

}  // namespace

std::string shape_string(const torch::Tensor& tensor) {
  std::ostringstream out;
  out << '[';
  for (int64_t i = 0; i < tensor.dim(); ++i) out << (i ? ", " : "") << tensor.size(i);
  out << ']';
  return out.str();
}

torch::IValue parse_torch_bytes(const std::vector<char>& bytes, const std::string& source) {
  if (bytes.empty()) throw std::runtime_error(source + " is empty, expected a torch.save file");
  try {
    try {
      return torch::pickle_load(bytes);
    } catch (const std::exception&) {
      // Python's OrderedDict state dicts land here; anything else fails again.
      auto rewritten = load_rewritten(bytes);
      if (!rewritten) throw;
      return std::move(*rewritten);
    }
  } catch (const std::exception& e) {
    // c10::Error messages carry a C++ backtrace; the first line is the cause.
    std::string cause = e.what();
    cause = cause.substr(0, cause.find('\n'));
    throw std::runtime_error("cannot read " + source +
                             " as a torch.save file (truncated, corrupted, not a torch.save "
                             "file, or the pre-1.6 non-zip format): " +
                             cause);
  }
}

torch::IValue read_torch_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  return parse_torch_bytes(bytes, path);
}

StateDict state_dict_from_ivalue(const torch::IValue& value, const std::string& source) {
  if (!value.isGenericDict()) {
    throw std::runtime_error(source + " holds a " + value.tagKind() +
                             ", expected a state dict (a dict of name -> tensor)");
  }
  StateDict dict;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString()) {
      throw std::runtime_error(source + " has a " + entry.key().tagKind() +
                               " key, expected a state dict with string keys");
    }
    const std::string name = entry.key().toStringRef();
    if (!entry.value().isTensor()) {
      throw std::runtime_error(source + ": entry " + name + " is a " + entry.value().tagKind() +
                               ", expected a tensor");
    }
    dict.insert(name, entry.value().toTensor());
  }
  return dict;
}

StateDict read_state_dict_file(const std::string& path) {
  return state_dict_from_ivalue(read_torch_file(path), path);
}

c10::Dict<std::string, torch::Tensor> state_dict_to_ivalue(const StateDict& dict) {
  c10::Dict<std::string, torch::Tensor> generic;
  // Standard (contiguous) layout in files whatever the model uses in memory
  // (channels-last convolutions): readers need not care.
  for (const auto& item : dict)
    generic.insert(item.key(), item.value().detach().cpu().contiguous());
  return generic;
}

void write_file_atomically(const std::vector<char>& bytes, const std::string& path) {
  const std::string temp = path + ".tmp";
  const auto fail = [&](const std::string& what) {
    const std::string reason = std::strerror(errno);
    ::unlink(temp.c_str());
    throw std::runtime_error("cannot write " + path + ": " + what + " " + temp + ": " + reason);
  };
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("open");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      fail("write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    fail("fsync");
  }
  if (::close(fd) != 0) fail("close");
  if (::rename(temp.c_str(), path.c_str()) != 0) fail("rename");
}

void write_state_dict_file(const StateDict& dict, const std::string& path) {
  write_file_atomically(torch::pickle_save(torch::IValue(state_dict_to_ivalue(dict))), path);
}

StateDict model_state_dict(const torch::nn::Module& model) {
  StateDict dict;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    dict.insert(item.key(), item.value());
  }
  for (const auto& item : model.named_buffers(/*recurse=*/true)) {
    dict.insert(item.key(), item.value());
  }
  return dict;
}

LoadResult load_state_dict(torch::nn::Module& model, const StateDict& dict,
                           const std::string& source, const LoadOptions& options) {
  StateDict targets = model_state_dict(model);
  for (const auto& item : dict) {
    if (!targets.contains(item.key())) {
      throw std::runtime_error(source + " has tensor " + item.key() + " (shape " +
                               shape_string(item.value()) +
                               ") that the model does not have; expected only the model's "
                               "tensors (wrong architecture?)");
    }
  }

  // Check everything first so a failed load leaves the model untouched.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> head_copies;
  LoadResult result;
  result.head_loaded = true;
  bool any_head = false;
  for (const auto& target : targets) {
    const std::string& name = target.key();
    const bool in_head = starts_with(name, options.head_prefix);
    any_head = any_head || in_head;
    const torch::Tensor* found = dict.find(name);
    if (found == nullptr) {
      if (in_head) {
        if (result.head_loaded) result.head_note = source + " has no " + name;
        result.head_loaded = false;
        continue;
      }
      throw std::runtime_error(source + " is missing tensor " + name + " (expected shape " +
                               shape_string(target.value()) + ")");
    }
    if (found->sizes() != target.value().sizes()) {
      if (in_head) {
        if (result.head_loaded) {
          result.head_note = name + " in " + source + " has shape " + shape_string(*found) +
                             ", the model's is " + shape_string(target.value()) +
                             " (another number of classes)";
        }
        result.head_loaded = false;
        continue;
      }
      throw std::runtime_error(source + ": tensor " + name + " has shape " + shape_string(*found) +
                               ", expected " + shape_string(target.value()));
    }
    (in_head ? head_copies : copies).emplace_back(target.value(), *found);
  }
  if (!any_head) result.head_loaded = false;

  // The head goes in whole or not at all.
  if (result.head_loaded) copies.insert(copies.end(), head_copies.begin(), head_copies.end());
  torch::NoGradGuard no_grad;
  for (auto& [target, value] : copies) target.copy_(value);
  result.tensors_loaded = static_cast<int64_t>(copies.size());
  if (any_head && !result.head_loaded) {
    spdlog::info("{}: head not loaded ({}); a new head is initialised", source, result.head_note);
  }
  return result;
}

}  // namespace xfer::trainer::models
