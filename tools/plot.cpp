// plot.cpp — charts from the trainer's JSONL logs (`train --log FILE`): standalone SVG 1.1 files and
// a markdown table, using nothing but the standard library and ref/io/json.h.
//
//   build/plot lines   --y FIELD [--smooth N] [--logy] [--source step|eval] --out F.svg RUN...
//   build/plot scatter --x FIELD --y FIELD [--logx] [--logy] --out F.svg RUN...
//   build/plot bars    --x FIELD --y FIELD [--logy] [--tail F] --out F.svg RUN...
//   build/plot heatmap [--step N] --out F.svg RUN
//   build/plot table   [--tail F] [--out F.md] RUN...
//
// RUN is a log file, optionally followed by ":label". The log has one JSON object per line:
// {"type":"config",...} at the start of every (re)started run, {"type":"step","step":N,...} after
// every optimizer step and {"type":"eval","step":N,...} after every evaluation (train.cpp writes
// them). docs/PLOTS.md shows every chart with an example.
//
// The file is laid out top to bottom: reading logs, picking fields out of records, number
// formatting and axes, the SVG writer, then one function per chart and main.
#include <algorithm>   // std::min, std::max, std::sort
#include <cerrno>      // errno
#include <cmath>       // std::isfinite, std::log10, std::pow
#include <cstdio>      // std::snprintf, std::fprintf
#include <cstring>     // std::strerror
#include <filesystem>  // std::filesystem::is_directory
#include <fstream>     // std::ifstream, std::ofstream
#include <iostream>    // std::cout
#include <iterator>    // std::istreambuf_iterator
#include <map>         // std::map
#include <sstream>     // std::ostringstream
#include <stdexcept>   // std::runtime_error
#include <string>
#include <vector>

#include "ref/io/json.h"
#include "tools/cli.h"  // parse_uint, parse_number: strict numbers

namespace {

const char* kUsage =
    "usage: plot <lines|scatter|bars|heatmap|table> [options] RUN[:label] ...\n"
    "\n"
    "Charts from training logs written by `train --log FILE` (one JSON record per line).\n"
    "RUN is a log file; ':label' names it in legends and tables (default: the file name without .jsonl).\n"
    "\n"
    "  lines   --y FIELD      a field of the step records against the step, one line per run\n"
    "          [--smooth N]   N-record trailing moving average (the paper's figures use 100); raw values stay faint\n"
    "          [--source eval] plot a field of the eval records instead (e.g. --y val_ppl)\n"
    "          [--no-raw]     leave out the faint raw values when smoothing\n"
    "  scatter --x F --y F    one labelled point per run from its last eval record (e.g. --x maxvio_global --y val_ppl)\n"
    "  bars    --x F --y F    grouped bars: x from each run (a category or number), y = the mean over the last 20% of\n"
    "                         the step records (e.g. --x ep_dp --y maxvio_cb); runs with the same label form one series\n"
    "          [--source eval] take y from the last eval record instead\n"
    "  heatmap                expert load / mean load per MoE layer (rows) and expert (columns), last eval record\n"
    "          [--step N]     use the eval record of step N instead\n"
    "  table                  markdown table of each run: its last eval, and train loss and MaxVio_batch averaged\n"
    "                         over the last 20% of the steps (default output: standard output)\n"
    "\n"
    "FIELD is a record field (loss, aux, lr, grad_norm, tok_s, maxvio_batch, maxvio_cb, val_loss, val_ppl,\n"
    "maxvio_global, ...), one element of a list field (maxvio_layers[0]), or a config field (config.aux_alpha).\n"
    "scatter and bars look a FIELD up in the last eval record, the step records and the config, in that order\n"
    "(bars: step records first).\n"
    "\n"
    "Common options:\n"
    "  --out FILE        output file ('-' = standard output); required for the SVG charts\n"
    "  --logy, --logx    logarithmic axis (values <= 0 are left out)\n"
    "  --tail F          fraction of the last step records averaged by bars and table (default 0.2)\n"
    "  --title T, --xlabel T, --ylabel T   override the default texts\n"
    "  --width W, --height H               canvas size in pixels (default 800 x 500)\n";

// ---------------------------------------------------------------- reading logs

struct Record {
  int line = 0;      // 1-based line in the file, for error messages
  int64_t step = 0;  // optimizer steps done when the record was written
  json::Value v;     // the whole record (an object)
};

struct Run {
  std::string path, label;
  json::Value config;                // "config" object of the last config record (Null if none)
  std::vector<Record> steps, evals;  // each sorted by step; records a restart superseded are gone
  std::string where(const Record& r) const { return path + ":" + std::to_string(r.line); }
};

std::string default_label(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') + 1);  // npos + 1 == 0
  for (const char* ext : {".jsonl", ".json", ".log"}) {
    const size_t n = std::strlen(ext);
    if (name.size() > n && name.compare(name.size() - n, n, ext) == 0) return name.substr(0, name.size() - n);
  }
  return name;
}

// "PATH" or "PATH:LABEL". A file that exists under the whole argument wins, so paths with ':' work.
void split_run_arg(const std::string& arg, std::string* path, std::string* label) {
  const size_t colon = arg.rfind(':');
  if (colon == std::string::npos || std::ifstream(arg).good()) {
    *path = arg;
    *label = default_label(arg);
  } else {
    *path = arg.substr(0, colon);
    *label = arg.substr(colon + 1);
    if (label->empty()) *label = default_label(*path);
  }
  if (path->empty()) throw std::runtime_error("empty log file name in '" + arg + "' (expected FILE or FILE:label)");
}

void warn(const std::string& msg) { std::fprintf(stderr, "plot: warning: %s\n", msg.c_str()); }

// A log may hold several runs: the trainer appends, so a resumed run continues the file and a run
// started again with the same --log restarts its step count. A record at step s replaces what was
// written before it for the same or later steps: step records of step >= s and eval records of
// step >= s (an eval at step s comes after step record s, so it supersedes only later step
// records). For a plain or cleanly resumed log nothing is removed.
void supersede(Run& run, const std::string& kind, int64_t s, const std::string& where) {
  size_t dropped = 0;
  const int64_t first_step_dropped = kind == "step" ? s : s + 1;
  while (!run.steps.empty() && run.steps.back().step >= first_step_dropped) run.steps.pop_back(), dropped++;
  while (!run.evals.empty() && run.evals.back().step >= s) run.evals.pop_back(), dropped++;
  if (dropped > 0)
    std::fprintf(stderr,
                 "plot: note: %s: %s record of step %lld starts the run again (resumed from an earlier checkpoint, or "
                 "a new run written to the same log); %zu earlier records of that step and later are superseded\n",
                 where.c_str(), kind.c_str(), (long long)s, dropped);
}

void add_record(Run& run, json::Value v, int line) {
  const std::string where = run.path + ":" + std::to_string(line);
  if (!v.is(json::Value::Object))
    throw std::runtime_error(where + ": expected a JSON object, got " + json::type_name(v.type) +
                             " (every line of a log is one record)");
  const json::Value* type = v.find("type");
  if (!type || !type->is(json::Value::String))
    throw std::runtime_error(where + ": record has no \"type\" string (expected \"config\", \"step\" or \"eval\")");
  const std::string& t = type->str;
  if (t == "config") {
    const json::Value* c = v.find("config");
    if (!c || !c->is(json::Value::Object))
      throw std::runtime_error(where + ": config record has no \"config\" object");
    run.config = *c;
    return;
  }
  if (t != "step" && t != "eval") return;  // a record type this tool does not plot (forward compatible)
  const json::Value* s = v.find("step");
  if (!s || !s->is(json::Value::Number)) throw std::runtime_error(where + ": " + t + " record has no numeric \"step\"");
  Record r;
  r.line = line;
  try {
    r.step = s->as_int();
  } catch (const std::exception&) {
    throw std::runtime_error(where + ": \"step\" must be an integer, got " + s->raw);
  }
  supersede(run, t, r.step, where);
  r.v = std::move(v);
  (t == "step" ? run.steps : run.evals).push_back(std::move(r));
}

Run load_run(const std::string& arg) {
  Run run;
  split_run_arg(arg, &run.path, &run.label);
  std::error_code ec;
  if (std::filesystem::is_directory(run.path, ec))
    throw std::runtime_error(run.path + ": is a directory; give the JSONL log file written by train --log");
  std::ifstream f(run.path, std::ios::binary);
  if (!f) throw std::runtime_error(run.path + ": cannot open the log (" + std::strerror(errno) + ")");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw std::runtime_error(run.path + ": read error");
  size_t pos = 0;
  for (int line = 1; pos < text.size(); ++line) {
    const size_t nl = text.find('\n', pos);
    const bool terminated = nl != std::string::npos;
    std::string s = text.substr(pos, terminated ? nl - pos : std::string::npos);
    pos = terminated ? nl + 1 : text.size();
    if (!s.empty() && s.back() == '\r') s.pop_back();
    if (s.find_first_not_of(" \t") == std::string::npos) continue;
    json::Value v;
    try {
      v = json::parse(s);
    } catch (const std::exception& e) {
      const std::string where = run.path + ":" + std::to_string(line);
      // The trainer may be writing this line right now (plotting a live run): an unterminated
      // last line that does not parse yet is skipped, anything else is an error.
      if (!terminated) {
        warn(where + ": skipping the incomplete last line (is the run still writing the log?)");
        break;
      }
      std::string what = e.what();
      const std::string prefix = "JSON error at line 1 ";  // the parser sees one line at a time
      if (what.compare(0, prefix.size(), prefix) == 0) what = "JSON error at " + what.substr(prefix.size());
      throw std::runtime_error(where + ": not a valid JSON record (" + what + ")");
    }
    add_record(run, std::move(v), line);
  }
  return run;
}

// ---------------------------------------------------------------- fields

// What a chart asks for: NAME, NAME[INDEX] (one element of a list field, e.g. one MoE layer of
// maxvio_layers) or config.NAME (a field of the run's config record).
struct FieldSpec {
  std::string text;  // as the user wrote it
  std::string name;
  int index = -1;
  bool config = false;
};

FieldSpec parse_field(const std::string& flag, const std::string& text) {
  FieldSpec f;
  f.text = text;
  std::string s = text;
  if (s.compare(0, 7, "config.") == 0) {
    f.config = true;
    s = s.substr(7);
  }
  const size_t br = s.find('[');
  if (br != std::string::npos) {
    const std::string idx = s.substr(br + 1, s.size() - br - 2);
    if (s.back() != ']' || idx.empty() || idx.size() > 6 || idx.find_first_not_of("0123456789") != std::string::npos)
      throw std::runtime_error(flag + " '" + text + "': expected NAME, NAME[INDEX] or config.NAME");
    f.index = std::stoi(idx);
    s = s.substr(0, br);
  }
  if (s.empty() || s.find_first_of("[] ") != std::string::npos)
    throw std::runtime_error(flag + " '" + text + "': expected NAME, NAME[INDEX] or config.NAME");
  f.name = s;
  return f;
}

// A field's value in one record. Numbers the trainer could not write (NaN, inf) are logged as
// null; they read as NaN and leave a gap.
struct Value {
  enum Kind { Missing, Number, String } kind = Missing;
  double num = NAN;
  std::string str;
};

Value get_field(const json::Value& obj, const FieldSpec& f, const std::string& where) {
  Value out;
  const json::Value* v = obj.find(f.name);
  if (!v) return out;
  if (f.index >= 0) {
    if (!v->is(json::Value::Array))
      throw std::runtime_error(where + ": field '" + f.name + "' is " + json::type_name(v->type) +
                               ", not a list; drop the [" + std::to_string(f.index) + "]");
    if ((size_t)f.index >= v->arr.size())
      throw std::runtime_error(where + ": " + f.text + " is out of range: '" + f.name + "' has " +
                               std::to_string(v->arr.size()) + " elements (indices 0.." +
                               std::to_string((long)v->arr.size() - 1) + ")");
    v = &v->arr[f.index];
  }
  switch (v->type) {
    case json::Value::Null: out.kind = Value::Number; return out;  // a non-finite number
    case json::Value::Number: out.kind = Value::Number; out.num = v->num; return out;
    case json::Value::String: out.kind = Value::String; out.str = v->str; return out;
    case json::Value::Bool: out.kind = Value::Number; out.num = v->b ? 1 : 0; return out;
    case json::Value::Array:
      throw std::runtime_error(where + ": field '" + f.text + "' is a list; pick one element, e.g. " + f.text + "[0]");
    default: throw std::runtime_error(where + ": field '" + f.text + "' is an object, not a number");
  }
}

// Names of the fields in a record that hold numbers or lists of numbers, for "did you mean" lists.
std::string field_names(const json::Value& obj) {
  std::string s;
  for (const auto& kv : obj.obj) {
    if (kv.first == "type" || kv.second.is(json::Value::Object)) continue;
    s += (s.empty() ? "" : ", ") + kv.first + (kv.second.is(json::Value::Array) ? "[i]" : "");
  }
  return s;
}

const std::vector<Record>& records(const Run& run, bool eval) { return eval ? run.evals : run.steps; }

// One (step, value) per record of the run that has the field. Errors when no record has it.
void series_of(const Run& run, const FieldSpec& f, bool eval, std::vector<double>* xs, std::vector<double>* ys) {
  const char* kind = eval ? "eval" : "step";
  if (f.config)
    throw std::runtime_error("--y " + f.text + ": a config field is one number per run; use scatter or bars for it");
  const std::vector<Record>& recs = records(run, eval);
  if (recs.empty())
    throw std::runtime_error(run.path + ": no " + kind + " records" +
                             (eval ? " (evaluations are logged at the end of training and every --eval-every N steps)"
                                   : " (is this a log written by train --log?)"));
  for (const Record& r : recs) {
    const Value v = get_field(r.v, f, run.where(r));
    if (v.kind == Value::Missing) continue;
    if (v.kind == Value::String)
      throw std::runtime_error(run.where(r) + ": field '" + f.text + "' is a string (\"" + v.str + "\"), not a number");
    xs->push_back((double)r.step);
    ys->push_back(v.num);
  }
  if (xs->empty())
    throw std::runtime_error(run.path + ": no " + kind + " record has the field '" + f.name + "'" +
                             (f.name == "maxvio_cb" || f.name == "ep_dp" ? " (it is logged only with train --ep-dp N)" : "") +
                             "; fields there: " + field_names(recs.back().v));
}

// How many of the last step records the tail statistics average (at least one).
size_t tail_count(size_t n, double frac) { return n == 0 ? 0 : std::max<size_t>(1, (size_t)std::ceil(frac * n - 1e-9)); }

// Mean of the finite values of a field over the last `frac` of the step records (NaN if none is
// finite; Missing if no record there has the field). A string field yields a category.
Value tail_value(const Run& run, const FieldSpec& f, double frac) {
  Value out;
  const size_t n = run.steps.size(), k = tail_count(n, frac);
  double sum = 0;
  size_t count = 0;
  for (size_t i = n - k; i < n; ++i) {
    const Value v = get_field(run.steps[i].v, f, run.where(run.steps[i]));
    if (v.kind == Value::Missing) continue;
    if (v.kind == Value::String) return v;
    out.kind = Value::Number;
    if (std::isfinite(v.num)) sum += v.num, count++;
  }
  if (count > 0) out.num = sum / count;
  return out;
}

// One value per run for scatter, bars and table: from the last eval record, the tail of the step
// records or the config, whichever has the field first (eval_first picks the first two's order).
Value run_value(const Run& run, const FieldSpec& f, bool eval_first, double frac) {
  if (!f.config) {
    for (int pass = 0; pass < 2; ++pass) {
      const bool eval = (pass == 0) == eval_first;
      if (eval && !run.evals.empty()) {
        const Value v = get_field(run.evals.back().v, f, run.where(run.evals.back()));
        if (v.kind != Value::Missing) return v;
      }
      if (!eval && !run.steps.empty()) {
        const Value v = tail_value(run, f, frac);
        if (v.kind != Value::Missing) return v;
      }
    }
  }
  if (run.config.is(json::Value::Object)) {
    const Value v = get_field(run.config, f, run.path + " (config record)");
    if (v.kind != Value::Missing) return v;
  }
  std::string msg = run.path + ": no field '" + f.text + "'";
  if (f.config)
    msg += run.config.is(json::Value::Object) ? " in the config record; config fields: " + field_names(run.config)
                                              : " (the log has no config record)";
  else {
    msg += " in the last eval record, the step records or the config";
    if (f.name == "maxvio_cb" || f.name == "ep_dp") msg += " (maxvio_cb and ep_dp are logged only with train --ep-dp N)";
    if (!run.steps.empty()) msg += "; step fields: " + field_names(run.steps.back().v);
    if (!run.evals.empty()) msg += "; eval fields: " + field_names(run.evals.back().v);
  }
  throw std::runtime_error(msg);
}

// Axis and legend texts for the fields the trainer logs.
std::string pretty(const FieldSpec& f) {
  static const std::map<std::string, std::string> names = {
      {"loss", "training loss"},
      {"aux", "aux loss"},
      {"lr", "learning rate"},
      {"grad_norm", "gradient norm"},
      {"tok_s", "tokens/s"},
      {"maxvio_batch", "MaxVio_batch"},
      {"maxvio_layers", "MaxVio_batch"},
      {"maxvio_cb", "MaxVio_computation-batch"},
      {"ep_dp", "EP data-parallel size (ep_dp)"},
      {"bias_std", "bias std"},
      {"val_loss", "validation loss"},
      {"val_ppl", "validation PPL"},
      {"maxvio_global", "MaxVio_global"},
      {"maxvio_global_layers", "MaxVio_global"},
  };
  if (f.config) return f.text.substr(7);
  const auto it = names.find(f.name);
  std::string s = it == names.end() ? f.name : it->second;
  if (f.index >= 0) s += it == names.end() ? "[" + std::to_string(f.index) + "]" : ", MoE layer " + std::to_string(f.index);
  return s;
}

// ---------------------------------------------------------------- numbers and axes

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// Short text for a number: fixed decimals matched to `step` (a tick spacing) when given, else %g.
std::string fmt_num(double v, double step = 0) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e6 || a < 1e-4) return fmt("%.3g", v);
  if (step > 0) {
    const int decimals = std::min(8, std::max(0, (int)std::ceil(-std::log10(step) - 1e-9)));
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
  }
  return fmt("%.4g", v);
}

// Pixel coordinate with one decimal: enough for a screen, and keeps files small.
std::string px(double v) { return fmt("%.1f", v); }

// 1, 2 or 5 times a power of ten, the closest step to `raw` from above-ish.
double nice_step(double raw) {
  const double e = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / e;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * e;
}

struct Axis {
  double lo = 0, hi = 1;  // values at the two ends
  double p0 = 0, p1 = 1;  // pixels of lo and hi
  bool log = false;
  double step = 0;        // linear tick spacing (0 for log axes), for label decimals
  std::vector<double> ticks;
  double pos(double v) const {
    const double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo)) : (v - lo) / (hi - lo);
    return p0 + t * (p1 - p0);
  }
  std::string label(double v) const { return fmt_num(v, step); }
};

// A linear axis covering [lo, hi] whose ends fall on ticks, about `target` ticks.
Axis linear_axis(double lo, double hi, bool include_zero, int target) {
  if (include_zero) lo = std::min(lo, 0.0), hi = std::max(hi, 0.0);
  if (!(hi > lo)) {  // one value: widen around it
    const double pad = lo != 0 ? std::fabs(lo) * 0.1 : 1;
    lo -= pad, hi += pad;
  }
  Axis a;
  a.step = nice_step((hi - lo) / target);
  a.lo = std::floor(lo / a.step + 1e-9) * a.step;
  a.hi = std::ceil(hi / a.step - 1e-9) * a.step;
  for (int i = 0;; ++i) {
    double v = a.lo + i * a.step;
    if (v > a.hi + a.step * 1e-6) break;
    if (std::fabs(v) < a.step * 1e-9) v = 0;  // no "-0" or 1e-17 labels
    a.ticks.push_back(v);
  }
  return a;
}

// A log10 axis covering [lo, hi] (both > 0) with 5% margins. Ticks at powers of ten, or at 1-2-5
// or 1..9 times them when the range is short; at plain linear steps when it spans under a decade.
Axis log_axis(double lo, double hi, int target) {
  Axis a;
  a.log = true;
  if (!(hi > lo)) lo /= 2, hi *= 2;
  const double l = std::log10(lo), h = std::log10(hi), pad = (h - l) * 0.05;
  a.lo = std::pow(10.0, l - pad), a.hi = std::pow(10.0, h + pad);
  const int e0 = (int)std::floor(std::log10(a.lo)), e1 = (int)std::ceil(std::log10(a.hi));
  const std::vector<std::vector<int>> mults = {{1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
  for (const std::vector<int>& m : mults) {
    a.ticks.clear();
    const int every = std::max(1, (e1 - e0) / (2 * target) + 1);  // thin out decades on very long ranges
    for (int e = e0; e <= e1; ++e)
      for (int k : m) {
        const double v = k * std::pow(10.0, e);
        if (v >= a.lo * (1 - 1e-9) && v <= a.hi * (1 + 1e-9) && (m.size() > 1 || (e - e0) % every == 0))
          a.ticks.push_back(v);
      }
    if (a.ticks.size() >= 3) return a;
  }
  Axis lin = linear_axis(a.lo, a.hi, false, target);
  a.ticks.clear();
  for (double v : lin.ticks)
    if (v >= a.lo && v <= a.hi && v > 0) a.ticks.push_back(v);
  a.step = lin.step;
  return a;
}

// Data range of finite (and, on a log axis, positive) values; false if there are none.
bool range_of(const std::vector<double>& v, bool log, double* lo, double* hi) {
  bool any = false;
  for (double x : v) {
    if (!std::isfinite(x) || (log && x <= 0)) continue;
    if (!any) *lo = *hi = x, any = true;
    *lo = std::min(*lo, x), *hi = std::max(*hi, x);
  }
  return any;
}

Axis make_axis(const std::vector<double>& values, bool log, bool include_zero, bool pad, double p0, double p1,
               int target, const std::string& what) {
  double lo = 0, hi = 0;
  if (!range_of(values, log, &lo, &hi))
    throw std::runtime_error("nothing to plot: no " + std::string(log ? "positive " : "finite ") + "value of " + what +
                             (log ? " (a log axis leaves out values <= 0; drop --log" + std::string("x/--logy)") : ""));
  if (pad && !log && hi > lo) {  // points on the frame are hard to see
    const double margin = (hi - lo) * 0.05;
    lo -= margin, hi += margin;
  }
  Axis a = log ? log_axis(lo, hi, target) : linear_axis(lo, hi, include_zero, target);
  a.p0 = p0, a.p1 = p1;
  return a;
}

// ---------------------------------------------------------------- SVG

// Text for XML: escapes markup characters, drops control characters XML 1.0 forbids and replaces
// bytes that are not valid UTF-8 with U+FFFD, so that any label still gives a well-formed file.
std::string xml(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      if (c == '&') out += "&amp;";
      else if (c == '<') out += "&lt;";
      else if (c == '>') out += "&gt;";
      else if (c == '"') out += "&quot;";
      else if (c == '\'') out += "&apos;";
      else if (c >= 0x20 || c == '\t' || c == '\n') out += (char)c;
      i++;
      continue;
    }
    // Length and first-continuation range of a valid sequence (RFC 3629, table 3-7 of Unicode).
    int n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    bool ok = n > 0 && i + n <= s.size();
    for (int k = 1; ok && k < n; ++k) {
      const unsigned char d = s[i + k];
      ok = k == 1 ? (d >= lo && d <= hi) : (d >= 0x80 && d <= 0xBF);
    }
    if (ok) out.append(s, i, n), i += n;
    else out += "\xEF\xBF\xBD", i++;
  }
  return out;
}

const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
const char* color(size_t i) { return kPalette[i % (sizeof kPalette / sizeof kPalette[0])]; }

// Rough width of a text in our sans-serif font: no font metrics without a renderer, so use the
// average glyph width (~0.6 em), counting UTF-8 code points.
double text_width(const std::string& s, double size) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return 0.6 * size * n;
}

std::string shorten(const std::string& s, size_t max_chars) {
  size_t n = 0, cut = std::string::npos;
  for (size_t i = 0; i < s.size(); ++i)
    if (((unsigned char)s[i] & 0xC0) != 0x80 && n++ == max_chars - 3) cut = i;
  return n <= max_chars ? s : s.substr(0, cut) + "...";
}

class Svg {
 public:
  Svg(int width, int height, const std::string& title) : w_(width), h_(height), title_(title) {}
  std::ostringstream body;

  void text(double x, double y, const std::string& s, const char* anchor = "start", int size = 12,
            const std::string& extra = "") {
    body << "<text x=\"" << px(x) << "\" y=\"" << px(y) << "\" font-size=\"" << size << "\"";
    if (std::strcmp(anchor, "start") != 0) body << " text-anchor=\"" << anchor << "\"";
    body << (extra.empty() ? "" : " ") << extra << ">" << xml(s) << "</text>\n";
  }
  void line(double x1, double y1, double x2, double y2, const char* stroke, double width = 1,
            const std::string& extra = "") {
    body << "<line x1=\"" << px(x1) << "\" y1=\"" << px(y1) << "\" x2=\"" << px(x2) << "\" y2=\"" << px(y2)
         << "\" stroke=\"" << stroke << "\" stroke-width=\"" << width << "\"" << (extra.empty() ? "" : " ") << extra
         << "/>\n";
  }
  void rect(double x, double y, double w, double h, const std::string& fill, const std::string& extra = "",
            const std::string& tooltip = "") {
    body << "<rect x=\"" << px(x) << "\" y=\"" << px(y) << "\" width=\"" << px(std::max(0.0, w)) << "\" height=\""
         << px(std::max(0.0, h)) << "\" fill=\"" << fill << "\"" << (extra.empty() ? "" : " ") << extra;
    if (tooltip.empty()) body << "/>\n";
    else body << "><title>" << xml(tooltip) << "</title></rect>\n";
  }

  std::string str() const {
    std::ostringstream o;
    o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" << w_ << "\" height=\"" << h_
      << "\" viewBox=\"0 0 " << w_ << " " << h_ << "\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\">\n"
      << "<title>" << xml(title_) << "</title>\n"
      << "<rect x=\"0\" y=\"0\" width=\"" << w_ << "\" height=\"" << h_ << "\" fill=\"white\"/>\n"
      << body.str() << "</svg>\n";
    return o.str();
  }

 private:
  int w_, h_;
  std::string title_;
};

// Plot area in pixels, leaving room for the title, axis labels and a legend on the right.
struct Frame {
  double left, top, right, bottom;
  double width() const { return right - left; }
  double height() const { return bottom - top; }
};

struct LegendItem {
  std::string label;
  const char* color;
  enum Mark { Line, Box, Dot } mark;
};

const size_t kLegendChars = 32;  // longer labels are shortened in the legend

double legend_width(const std::vector<LegendItem>& items) {
  double w = 0;
  for (const LegendItem& it : items) w = std::max(w, text_width(shorten(it.label, kLegendChars), 12));
  return items.empty() ? 0 : w + 44;
}

Frame make_frame(int W, int H, const std::vector<LegendItem>& legend) {
  return Frame{72, 44, W - 20 - legend_width(legend), H - 56.0};
}

void draw_title(Svg& svg, int W, const std::string& title) { svg.text(W / 2.0, 26, title, "middle", 16, "font-weight=\"bold\""); }

void draw_legend(Svg& svg, const Frame& fr, const std::vector<LegendItem>& items) {
  const double x = fr.right + 14, y0 = fr.top + 4;
  svg.body << "<g id=\"legend\">\n";
  for (size_t i = 0; i < items.size(); ++i) {
    const double y = y0 + 20.0 * i;
    const LegendItem& it = items[i];
    if (it.mark == LegendItem::Line) svg.line(x, y + 6, x + 22, y + 6, it.color, 2.5);
    else if (it.mark == LegendItem::Box) svg.rect(x + 4, y, 14, 12, it.color);
    else svg.body << "<circle cx=\"" << px(x + 11) << "\" cy=\"" << px(y + 6) << "\" r=\"5\" fill=\"" << it.color << "\"/>\n";
    svg.text(x + 28, y + 10, shorten(it.label, kLegendChars));
  }
  svg.body << "</g>\n";
}

// Grid, ticks and tick labels of a value axis; `vertical` is the y axis.
void draw_axis(Svg& svg, const Frame& fr, const Axis& a, bool vertical, const std::string& label) {
  svg.body << "<g id=\"" << (vertical ? "y" : "x") << "-axis\">\n";
  for (double v : a.ticks) {
    const double p = a.pos(v);
    if (vertical) {
      svg.line(fr.left, p, fr.right, p, "#e5e5e5");
      svg.line(fr.left - 5, p, fr.left, p, "#333333");
      svg.text(fr.left - 8, p + 4, a.label(v), "end", 11);
    } else {
      svg.line(p, fr.top, p, fr.bottom, "#e5e5e5");
      svg.line(p, fr.bottom, p, fr.bottom + 5, "#333333");
      svg.text(p, fr.bottom + 18, a.label(v), "middle", 11);
    }
  }
  if (vertical) {
    const double x = 18, y = (fr.top + fr.bottom) / 2;
    svg.text(x, y, label, "middle", 13, "transform=\"rotate(-90 " + px(x) + " " + px(y) + ")\"");
  } else {
    svg.text((fr.left + fr.right) / 2, fr.bottom + 40, label, "middle", 13);
  }
  svg.body << "</g>\n";
}

void draw_frame(Svg& svg, const Frame& fr) {
  svg.rect(fr.left, fr.top, fr.width(), fr.height(), "none", "stroke=\"#333333\" stroke-width=\"1\"");
}

// Everything drawn inside the plot area goes through this clip, so stray values stay inside it.
void begin_clip(Svg& svg, const Frame& fr) {
  svg.body << "<defs><clipPath id=\"plot-area\"><rect x=\"" << px(fr.left) << "\" y=\"" << px(fr.top)
           << "\" width=\"" << px(fr.width()) << "\" height=\"" << px(fr.height()) << "\"/></clipPath></defs>\n"
           << "<g clip-path=\"url(#plot-area)\">\n";
}

void write_output(const std::string& path, const std::string& content) {
  if (path == "-") {
    std::cout << content << std::flush;
    return;
  }
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open for writing (" + std::strerror(errno) + ")");
  f << content;
  f.close();
  if (!f) throw std::runtime_error(path + ": write failed");
}

// ---------------------------------------------------------------- options

struct Options {
  std::string cmd;
  std::map<std::string, std::string> flags;  // name without dashes -> value ("1" for switches)
  std::vector<std::string> runs;

  bool has(const std::string& k) const { return flags.count(k) > 0; }
  std::string get(const std::string& k, const std::string& dflt = "") const {
    const auto it = flags.find(k);
    return it == flags.end() ? dflt : it->second;
  }
  std::string need(const std::string& k) const {
    if (!has(k)) throw std::runtime_error("plot " + cmd + " needs --" + k + " (see plot --help)");
    return get(k);
  }
  // Strict numbers (tools/cli.h): the whole text, in range, or an error naming the flag.
  double number(const std::string& k, double dflt, double lo, double hi) const {
    return has(k) ? cli::parse_number("--" + k, get(k), lo, hi) : dflt;
  }
  // Counts (pixels, steps, window sizes) are integers: "--width 300.5" is refused, not cut to 300.
  uint64_t integer(const std::string& k, uint64_t dflt, uint64_t lo, uint64_t hi) const {
    return has(k) ? cli::parse_uint("--" + k, get(k), lo, hi) : dflt;
  }
};

struct FlagInfo {
  const char* name;
  bool takes_value;
  const char* commands;  // space-separated commands the flag applies to
};

const FlagInfo kFlags[] = {
    {"out", true, "lines scatter bars heatmap table"},
    {"x", true, "scatter bars"},
    {"y", true, "lines scatter bars"},
    {"smooth", true, "lines"},
    {"no-raw", false, "lines"},
    {"source", true, "lines bars"},
    {"logx", false, "scatter"},
    {"logy", false, "lines scatter bars"},
    {"tail", true, "bars table"},
    {"step", true, "heatmap"},
    {"title", true, "lines scatter bars heatmap"},
    {"xlabel", true, "lines scatter bars heatmap"},
    {"ylabel", true, "lines scatter bars heatmap"},
    {"width", true, "lines scatter bars heatmap"},
    {"height", true, "lines scatter bars heatmap"},
};

Options parse_args(int argc, char** argv) {
  Options o;
  o.cmd = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.size() < 3 || a.compare(0, 2, "--") != 0) {
      o.runs.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    const size_t eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) value = name.substr(eq + 1), name = name.substr(0, eq);
    const FlagInfo* info = nullptr;
    for (const FlagInfo& f : kFlags)
      if (name == f.name) info = &f;
    if (!info) throw std::runtime_error("unknown option --" + name + " (see plot --help)");
    if (!std::strstr((std::string(" ") + info->commands + " ").c_str(), (" " + o.cmd + " ").c_str()))
      throw std::runtime_error("--" + name + " does not apply to 'plot " + o.cmd + "' (it is for: " + info->commands + ")");
    if (info->takes_value && !inline_value) {
      if (i + 1 >= argc) throw std::runtime_error("--" + name + " needs a value");
      value = argv[++i];
    }
    if (!info->takes_value) {
      if (inline_value) throw std::runtime_error("--" + name + " takes no value");
      value = "1";
    }
    o.flags[name] = value;
  }
  if (o.runs.empty()) throw std::runtime_error("plot " + o.cmd + ": no log files given (RUN[:label] ...)");
  return o;
}

std::vector<Run> load_runs(const Options& o) {
  std::vector<Run> runs;
  for (const std::string& a : o.runs) runs.push_back(load_run(a));
  return runs;
}

int canvas(const Options& o, const char* k, int dflt) { return (int)o.integer(k, dflt, 200, 10000); }

// ---------------------------------------------------------------- lines

// Trailing moving average over the last `n` records (fewer at the start); non-finite values are
// skipped, and a point whose whole window is non-finite stays NaN (a gap).
std::vector<double> moving_average(const std::vector<double>& y, size_t n) {
  std::vector<double> out(y.size(), NAN);
  double sum = 0;
  size_t count = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (std::isfinite(y[i])) sum += y[i], count++;
    if (i >= n && std::isfinite(y[i - n])) sum -= y[i - n], count--;
    if (count > 0) out[i] = sum / count;
  }
  return out;
}

// SVG path data for a polyline broken at NaN gaps. Long series (more points than ~4 per pixel
// column) keep only the first, lowest, highest and last point of each column: the drawing is the
// same, the file stays small for 40k-step runs.
std::string path_data(const std::vector<double>& xs, const std::vector<double>& ys, const Axis& ax, const Axis& ay) {
  std::ostringstream d;
  bool pen_down = false;
  const bool thin = xs.size() > 4 * std::fabs(ax.p1 - ax.p0);
  struct Pt { size_t i; double x, y; };
  std::vector<Pt> column;  // points of the current pixel column (thin mode)
  auto emit = [&](double x, double y) {
    d << (pen_down ? "L" : "M") << px(x) << " " << px(y) << " ";
    pen_down = true;
  };
  auto flush = [&]() {
    if (column.empty()) return;
    size_t lo = 0, hi = 0;
    for (size_t k = 0; k < column.size(); ++k) {
      if (column[k].y < column[lo].y) lo = k;
      if (column[k].y > column[hi].y) hi = k;
    }
    std::vector<size_t> keep = {0, std::min(lo, hi), std::max(lo, hi), column.size() - 1};
    keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
    for (size_t k : keep) emit(column[k].x, column[k].y);
    column.clear();
  };
  for (size_t i = 0; i < xs.size(); ++i) {
    const bool ok = std::isfinite(ys[i]) && (!ay.log || ys[i] > 0);
    if (!ok) {
      flush();
      pen_down = false;
      continue;
    }
    const double x = ax.pos(xs[i]), y = ay.pos(ys[i]);
    if (!thin) {
      emit(x, y);
      continue;
    }
    if (!column.empty() && std::floor(column.back().x) != std::floor(x)) flush();
    column.push_back({i, x, y});
  }
  flush();
  return d.str();
}

int cmd_lines(const Options& o) {
  const FieldSpec fy = parse_field("--y", o.need("y"));
  const std::string source = o.get("source", "step");
  if (source != "step" && source != "eval") throw std::runtime_error("--source '" + source + "': expected step or eval");
  const bool eval = source == "eval", logy = o.has("logy");
  const size_t smooth = (size_t)o.integer("smooth", 1, 1, 10000000);
  const bool raw = smooth > 1 && !o.has("no-raw");
  const std::string out = o.need("out");
  const std::vector<Run> runs = load_runs(o);

  struct Series { std::string label; std::vector<double> x, y, avg; };
  std::vector<Series> series;
  std::vector<double> all_x, all_y;
  for (const Run& run : runs) {
    Series s;
    s.label = run.label;
    series_of(run, fy, eval, &s.x, &s.y);
    s.avg = smooth > 1 ? moving_average(s.y, smooth) : s.y;
    double lo, hi;
    if (!range_of(s.avg, logy, &lo, &hi))
      warn(run.path + ": every value of " + fy.text + (logy ? " is <= 0 or not finite" : " is null (not finite)") +
           "; the run is in the legend but draws nothing");
    size_t dropped = 0;
    for (double v : s.y) dropped += logy && std::isfinite(v) && v <= 0;
    if (dropped) warn(run.path + ": " + std::to_string(dropped) + " values <= 0 left out of the log axis");
    all_x.insert(all_x.end(), s.x.begin(), s.x.end());
    all_y.insert(all_y.end(), (raw ? s.y : s.avg).begin(), (raw ? s.y : s.avg).end());
    series.push_back(std::move(s));
  }

  const int W = canvas(o, "width", 800), H = canvas(o, "height", 500);
  std::vector<LegendItem> legend;
  for (size_t i = 0; i < series.size(); ++i) legend.push_back({series[i].label, color(i), LegendItem::Line});
  const Frame fr = make_frame(W, H, legend);
  Axis ax = make_axis(all_x, false, false, false, fr.left, fr.right, 8, "step");
  Axis ay = make_axis(all_y, logy, false, false, fr.bottom, fr.top, 6, fy.text);

  std::string title = pretty(fy);
  if (smooth > 1) title += " (" + std::to_string(smooth) + "-" + (eval ? "eval" : "step") + " moving average)";
  if (eval && smooth == 1) title += " at each evaluation";
  title = o.get("title", title);
  Svg svg(W, H, title);
  draw_title(svg, W, title);
  draw_axis(svg, fr, ay, true, o.get("ylabel", pretty(fy) + (logy ? " (log scale)" : "")));
  draw_axis(svg, fr, ax, false, o.get("xlabel", "step"));
  begin_clip(svg, fr);
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    svg.body << "<g id=\"series-" << i << "\"><title>" << xml(s.label) << "</title>\n";
    if (raw)
      svg.body << "<path d=\"" << path_data(s.x, s.y, ax, ay) << "\" fill=\"none\" stroke=\"" << color(i)
               << "\" stroke-opacity=\"0.25\" stroke-width=\"1\" stroke-linejoin=\"round\" stroke-linecap=\"round\"/>\n";
    svg.body << "<path d=\"" << path_data(s.x, s.avg, ax, ay) << "\" fill=\"none\" stroke=\"" << color(i)
             << "\" stroke-width=\"2\" stroke-linejoin=\"round\" stroke-linecap=\"round\"/>\n</g>\n";
  }
  svg.body << "</g>\n";
  draw_frame(svg, fr);
  draw_legend(svg, fr, legend);
  write_output(out, svg.str());
  return 0;
}

// ---------------------------------------------------------------- scatter

// Label groups in first-seen order: runs with the same label share a colour and a legend entry.
std::vector<size_t> group_by_label(const std::vector<Run>& runs, std::vector<std::string>* labels) {
  std::vector<size_t> group;
  for (const Run& r : runs) {
    const size_t g = std::find(labels->begin(), labels->end(), r.label) - labels->begin();
    if (g == labels->size()) labels->push_back(r.label);
    group.push_back(g);
  }
  return group;
}

double need_number(const Value& v, const Run& run, const FieldSpec& f, const char* chart) {
  if (v.kind != Value::Number)
    throw std::runtime_error(run.path + ": " + f.text + " is \"" + v.str + "\", but " + chart + " needs a number");
  return v.num;
}

int cmd_scatter(const Options& o) {
  const FieldSpec fx = parse_field("--x", o.need("x")), fy = parse_field("--y", o.need("y"));
  const bool logx = o.has("logx"), logy = o.has("logy");
  const std::string out = o.need("out");
  const std::vector<Run> runs = load_runs(o);
  std::vector<std::string> labels;
  const std::vector<size_t> group = group_by_label(runs, &labels);
  std::vector<double> xs, ys;
  for (const Run& run : runs) {
    xs.push_back(need_number(run_value(run, fx, true, 0.2), run, fx, "scatter"));
    ys.push_back(need_number(run_value(run, fy, true, 0.2), run, fy, "scatter"));
    if (!std::isfinite(xs.back()) || !std::isfinite(ys.back()))
      warn(run.path + ": " + fx.text + " or " + fy.text + " is not finite; the run is left out");
  }

  const int W = canvas(o, "width", 800), H = canvas(o, "height", 500);
  std::vector<LegendItem> legend;
  for (size_t g = 0; g < labels.size(); ++g) legend.push_back({labels[g], color(g), LegendItem::Dot});
  Frame fr = make_frame(W, H, legend);
  const Axis ax = make_axis(xs, logx, false, true, fr.left, fr.right, 7, fx.text);
  const Axis ay = make_axis(ys, logy, false, true, fr.bottom, fr.top, 6, fy.text);
  const std::string title = o.get("title", pretty(fy) + " vs " + pretty(fx) + " (one point per run)");
  Svg svg(W, H, title);
  draw_title(svg, W, title);
  draw_axis(svg, fr, ay, true, o.get("ylabel", pretty(fy) + (logy ? " (log scale)" : "")));
  draw_axis(svg, fr, ax, false, o.get("xlabel", pretty(fx) + (logx ? " (log scale)" : "")));
  begin_clip(svg, fr);
  for (size_t g = 0; g < labels.size(); ++g) {
    svg.body << "<g id=\"series-" << g << "\"><title>" << xml(labels[g]) << "</title>\n";
    for (size_t i = 0; i < runs.size(); ++i) {
      const bool ok = std::isfinite(xs[i]) && std::isfinite(ys[i]) && (!logx || xs[i] > 0) && (!logy || ys[i] > 0);
      if (group[i] != g || !ok) continue;
      const double x = ax.pos(xs[i]), y = ay.pos(ys[i]);
      svg.body << "<circle cx=\"" << px(x) << "\" cy=\"" << px(y) << "\" r=\"6\" fill=\"" << color(g)
               << "\" stroke=\"white\" stroke-width=\"1\"><title>" << xml(runs[i].label + ": " + fx.text + " " +
                                                                          fmt_num(xs[i]) + ", " + fy.text + " " +
                                                                          fmt_num(ys[i]))
               << "</title></circle>\n";
      // The label goes left of points in the right third, so it stays inside the plot.
      const bool left = x > fr.left + fr.width() * 0.67;
      svg.text(left ? x - 10 : x + 10, y - 8, runs[i].label, left ? "end" : "start", 12);
    }
    svg.body << "</g>\n";
  }
  svg.body << "</g>\n";
  draw_frame(svg, fr);
  draw_legend(svg, fr, legend);
  write_output(out, svg.str());
  return 0;
}

// ---------------------------------------------------------------- bars

int cmd_bars(const Options& o) {
  const FieldSpec fx = parse_field("--x", o.need("x")), fy = parse_field("--y", o.need("y"));
  const std::string source = o.get("source", "step");
  if (source != "step" && source != "eval") throw std::runtime_error("--source '" + source + "': expected step or eval");
  const double frac = o.number("tail", 0.2, 1e-9, 1);
  const bool logy = o.has("logy");
  const std::string out = o.need("out");
  const std::vector<Run> runs = load_runs(o);
  std::vector<std::string> labels;
  const std::vector<size_t> group = group_by_label(runs, &labels);

  // Categories: numbers in increasing order, then strings in first-seen order.
  struct Cat { bool is_num; double num; std::string text; };
  std::vector<Cat> cats;
  std::vector<size_t> cat_of;
  std::vector<double> ys;
  for (const Run& run : runs) {
    const Value vx = run_value(run, fx, false, frac);
    Cat c{vx.kind == Value::Number, vx.num, vx.kind == Value::Number ? fmt_num(vx.num) : vx.str};
    if (c.is_num && !std::isfinite(c.num)) throw std::runtime_error(run.path + ": " + fx.text + " is not finite");
    size_t k = 0;
    while (k < cats.size() && cats[k].text != c.text) ++k;
    if (k == cats.size()) cats.push_back(c);
    cat_of.push_back(k);
    ys.push_back(need_number(run_value(run, fy, source == "eval", frac), run, fy, "bars"));
    if (!std::isfinite(ys.back())) warn(run.path + ": " + fy.text + " is not finite; the run is left out");
  }
  std::vector<size_t> order(cats.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (cats[a].is_num != cats[b].is_num) return cats[a].is_num;
    return cats[a].is_num && cats[a].num < cats[b].num;
  });
  std::vector<size_t> slot(cats.size());  // category index -> position on the axis
  for (size_t k = 0; k < order.size(); ++k) slot[order[k]] = k;

  // Mean y per (series, category): repeated runs (e.g. seeds) with the same label and x average.
  const size_t G = labels.size(), NC = cats.size();
  std::vector<double> sum(G * NC, 0), mean(G * NC, NAN);
  std::vector<int> count(G * NC, 0);
  for (size_t i = 0; i < runs.size(); ++i)
    if (std::isfinite(ys[i])) sum[group[i] * NC + cat_of[i]] += ys[i], count[group[i] * NC + cat_of[i]]++;
  std::vector<double> values;
  for (size_t j = 0; j < G * NC; ++j)
    if (count[j] > 0) mean[j] = sum[j] / count[j], values.push_back(mean[j]);

  const int W = canvas(o, "width", 800), H = canvas(o, "height", 500);
  std::vector<LegendItem> legend;
  for (size_t g = 0; g < G; ++g) legend.push_back({labels[g], color(g), LegendItem::Box});
  const Frame fr = make_frame(W, H, legend);
  const Axis ay = make_axis(values, logy, true, false, fr.bottom, fr.top, 6, fy.text);
  const std::string ytext = pretty(fy) + (source == "eval" ? " (last eval)" : "");
  const std::string title =
      o.get("title", ytext + " by " + pretty(fx) +
                         (source == "eval" ? "" : " (mean of the last " + fmt_num(frac * 100) + "% of steps)"));
  Svg svg(W, H, title);
  draw_title(svg, W, title);
  draw_axis(svg, fr, ay, true, o.get("ylabel", ytext + (logy ? " (log scale)" : "")));

  // x axis: one band per category, the series' bars side by side in 80% of it.
  const double band = fr.width() / NC, bar = band * 0.8 / G;
  svg.body << "<g id=\"x-axis\">\n";
  for (size_t k = 0; k < NC; ++k) {
    const double cx = fr.left + band * (slot[k] + 0.5);
    svg.line(cx, fr.bottom, cx, fr.bottom + 5, "#333333");
    svg.text(cx, fr.bottom + 18, cats[k].text, "middle", 11);
  }
  svg.text((fr.left + fr.right) / 2, fr.bottom + 40, o.get("xlabel", pretty(fx)), "middle", 13);
  svg.body << "</g>\n";
  begin_clip(svg, fr);
  const double base = ay.pos(logy ? ay.lo : std::max(ay.lo, std::min(0.0, ay.hi)));
  for (size_t g = 0; g < G; ++g) {
    svg.body << "<g id=\"series-" << g << "\"><title>" << xml(labels[g]) << "</title>\n";
    for (size_t k = 0; k < NC; ++k) {
      const double v = mean[g * NC + k];
      if (!std::isfinite(v) || (logy && v <= 0)) continue;
      const double x = fr.left + band * (slot[k] + 0.1) + bar * g, y = ay.pos(v);
      const int n = count[g * NC + k];
      svg.rect(x, std::min(y, base), bar * 0.92, std::fabs(base - y), color(g), "",
               labels[g] + ", " + fx.text + " " + cats[k].text + ": " + fy.text + " " + fmt_num(v) +
                   (n > 1 ? " (mean of " + std::to_string(n) + " runs)" : ""));
      if (bar >= 26) svg.text(x + bar * 0.46, std::min(y, base) - 4, fmt_num(v), "middle", 10);
    }
    svg.body << "</g>\n";
  }
  svg.body << "</g>\n";
  draw_frame(svg, fr);
  draw_legend(svg, fr, legend);
  write_output(out, svg.str());
  return 0;
}

// ---------------------------------------------------------------- heatmap

// Diverging colour for load / mean load: blue (no tokens) - white (ideal, 1) - red (vmax).
std::string load_color(double r, double vmax) {
  if (!std::isfinite(r)) return "#bbbbbb";
  const double blue[3] = {59, 76, 192}, white[3] = {247, 247, 247}, red[3] = {180, 4, 38};
  const double* a = r <= 1 ? blue : white;
  const double* b = r <= 1 ? white : red;
  const double t = r <= 1 ? std::max(0.0, r) : std::min(1.0, (r - 1) / (vmax - 1));
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", (int)std::lround(a[0] + t * (b[0] - a[0])),
                (int)std::lround(a[1] + t * (b[1] - a[1])), (int)std::lround(a[2] + t * (b[2] - a[2])));
  return buf;
}

int cmd_heatmap(const Options& o) {
  if (o.runs.size() != 1) throw std::runtime_error("plot heatmap takes one log file, got " + std::to_string(o.runs.size()));
  const std::string out = o.need("out");
  const Run run = load_run(o.runs[0]);
  if (run.evals.empty())
    throw std::runtime_error(run.path + ": no eval record (evaluations are logged at the end of training and every "
                             "--eval-every N steps)");
  const Record* rec = &run.evals.back();
  if (o.has("step")) {
    const int64_t want = (int64_t)o.integer("step", 0, 0, 1000000000000000);
    rec = nullptr;
    std::string have;
    for (const Record& r : run.evals) {
      if (r.step == want) rec = &r;
      have += (have.empty() ? "" : " ") + std::to_string(r.step);
    }
    if (!rec) throw std::runtime_error(run.path + ": no eval record at step " + std::to_string(want) + " (eval steps: " + have + ")");
  }
  const std::string where = run.where(*rec);
  const json::Value* loads = rec->v.find("loads");
  if (!loads) throw std::runtime_error(where + ": eval record has no \"loads\" (per-layer expert token counts)");
  if (!loads->is(json::Value::Array) || loads->arr.empty())
    throw std::runtime_error(where + ": \"loads\" must be a non-empty list of per-layer lists (the model has no MoE layer?)");
  const size_t R = loads->arr.size();
  size_t E = 0;
  std::vector<double> load;  // (R, E)
  for (size_t l = 0; l < R; ++l) {
    const json::Value& row = loads->arr[l];
    if (!row.is(json::Value::Array) || row.arr.empty() || (E && row.arr.size() != E))
      throw std::runtime_error(where + ": loads[" + std::to_string(l) +
                               "] must be a list of per-expert counts, the same length for every layer");
    E = row.arr.size();
    for (const json::Value& v : row.arr) {
      if (!v.is(json::Value::Number) || v.num < 0)
        throw std::runtime_error(where + ": loads[" + std::to_string(l) + "] holds a value that is not a count >= 0");
      load.push_back(v.num);
    }
  }
  // Ratio to the ideal (uniform) load of the layer: 1 everywhere means perfect balance.
  std::vector<double> ratio(R * E, NAN);
  double vmax = 2;
  for (size_t l = 0; l < R; ++l) {
    double total = 0;
    for (size_t e = 0; e < E; ++e) total += load[l * E + e];
    if (total <= 0) continue;
    for (size_t e = 0; e < E; ++e) ratio[l * E + e] = load[l * E + e] / (total / E), vmax = std::max(vmax, ratio[l * E + e]);
  }
  int first_moe = 0;  // MoE layers come after the config's n_dense dense layers
  if (const json::Value* nd = run.config.find("n_dense"))
    if (nd->is(json::Value::Number)) first_moe = (int)nd->num;

  const int W = canvas(o, "width", 800), H = canvas(o, "height", 500);
  const Frame fr{82, 44, W - 120.0, H - 56.0};
  const double cw = fr.width() / E, ch = fr.height() / R;
  std::string title = "Expert load / mean load, " + run.label + ", step " + std::to_string(rec->step);
  if (const json::Value* mg = rec->v.find("maxvio_global"))
    if (mg->is(json::Value::Number)) title += " (MaxVio_global " + fmt("%.3f", mg->num) + ")";
  title = o.get("title", title);
  Svg svg(W, H, title);
  draw_title(svg, W, title);
  svg.body << "<g id=\"cells\">\n";
  for (size_t l = 0; l < R; ++l) {
    svg.body << "<g id=\"row-" << l << "\">\n";
    for (size_t e = 0; e < E; ++e) {
      const double r = ratio[l * E + e], x = fr.left + cw * e, y = fr.top + ch * l;
      svg.rect(x, y, cw, ch, load_color(r, vmax), "stroke=\"white\" stroke-width=\"0.5\"",
               "layer " + std::to_string(first_moe + l) + ", expert " + std::to_string(e) + ": " + fmt_num(load[l * E + e]) +
                   " tokens, " + fmt("%.3f", r) + " x mean");
      if (cw >= 34 && ch >= 16 && std::isfinite(r)) {
        const bool dark = r < 0.35 || r > 1 + 0.6 * (vmax - 1);
        svg.text(x + cw / 2, y + ch / 2 + 4, fmt("%.2f", r), "middle", 10, dark ? "fill=\"white\"" : "");
      }
    }
    svg.body << "</g>\n";
  }
  svg.body << "</g>\n";
  draw_frame(svg, fr);
  // Row labels (model layer index) and column labels (expert index, thinned so they fit).
  svg.body << "<g id=\"y-axis\">\n";
  const size_t row_every = (size_t)std::ceil(14 / ch);
  for (size_t l = 0; l < R; l += row_every)
    svg.text(fr.left - 6, fr.top + ch * (l + 0.5) + 4, "layer " + std::to_string(first_moe + l), "end", 11);
  const double yx = 16, yy = (fr.top + fr.bottom) / 2;
  svg.text(yx, yy, o.get("ylabel", "MoE layer"), "middle", 13, "transform=\"rotate(-90 " + px(yx) + " " + px(yy) + ")\"");
  svg.body << "</g>\n<g id=\"x-axis\">\n";
  const size_t every = (size_t)std::ceil(22 / cw);
  for (size_t e = 0; e < E; e += every) svg.text(fr.left + cw * (e + 0.5), fr.bottom + 16, std::to_string(e), "middle", 11);
  svg.text((fr.left + fr.right) / 2, fr.bottom + 40, o.get("xlabel", "expert"), "middle", 13);
  svg.body << "</g>\n";

  // Colour bar: a gradient with its white stop at ratio 1, ticks at round ratios.
  const double bx = fr.right + 30, bw = 18;
  Axis cb = linear_axis(0, vmax, true, 5);
  cb.hi = vmax, cb.p0 = fr.bottom, cb.p1 = fr.top;
  svg.body << "<defs><linearGradient id=\"load-scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">"
           << "<stop offset=\"0\" stop-color=\"" << load_color(0, vmax) << "\"/>"
           << "<stop offset=\"" << fmt("%.4f", 1 / vmax) << "\" stop-color=\"" << load_color(1, vmax) << "\"/>"
           << "<stop offset=\"1\" stop-color=\"" << load_color(vmax, vmax) << "\"/></linearGradient></defs>\n"
           << "<g id=\"colorbar\">\n";
  svg.rect(bx, fr.top, bw, fr.height(), "url(#load-scale)", "stroke=\"#333333\" stroke-width=\"1\"");
  for (double v : cb.ticks) {
    if (v > vmax + 1e-9) continue;
    svg.line(bx + bw, cb.pos(v), bx + bw + 4, cb.pos(v), "#333333");
    svg.text(bx + bw + 7, cb.pos(v) + 4, cb.label(v), "start", 11);
  }
  svg.text(bx + bw / 2, fr.top - 8, "load / mean", "middle", 11);
  svg.body << "</g>\n";
  write_output(out, svg.str());
  return 0;
}

// ---------------------------------------------------------------- table

// "lossfree (add, sign, u=0.001)", "aux (alpha=0.001)", "none", plus the gate and routing when
// they differ from the paper's main setting.
std::string describe_balance(const json::Value& c) {
  if (!c.is(json::Value::Object)) return "?";
  auto s = [&](const char* k) {
    const json::Value* v = c.find(k);
    return v && v->is(json::Value::String) ? v->str : std::string("?");
  };
  auto n = [&](const char* k) {
    const json::Value* v = c.find(k);
    return v && v->is(json::Value::Number) ? fmt_num(v->num) : std::string("?");
  };
  std::string d = s("balance");
  if (d == "lossfree") d += " (" + s("bias_kind") + ", " + s("update_rule") + ", u=" + n("bias_rate") + ")";
  if (d == "aux") d += " (alpha=" + n("aux_alpha") + ")";
  if (s("gate") != "sigmoid") d += ", " + s("gate") + " gate";
  if (s("routing") != "token_choice") d += ", " + s("routing");
  return d;
}

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n' || c == '\r') out += ' ';
    else out += c;
  }
  return out;
}

int cmd_table(const Options& o) {
  const double frac = o.number("tail", 0.2, 1e-9, 1);
  const std::vector<Run> runs = load_runs(o);
  const FieldSpec mvb = parse_field("", "maxvio_batch"), mvcb = parse_field("", "maxvio_cb"),
                  loss = parse_field("", "loss");
  bool any_cb = false;
  for (const Run& r : runs) any_cb |= !r.steps.empty() && tail_value(r, mvcb, frac).kind == Value::Number;
  const std::string pct = fmt_num(frac * 100) + "%";
  std::ostringstream t;
  t << "| run | balance | step | train loss (last " << pct << ") | val loss | val PPL | MaxVio_global | MaxVio_batch (last "
    << pct << ")" << (any_cb ? " | MaxVio_cb (last " + pct + ")" : "") << " |\n"
    << "|---|---|---:|---:|---:|---:|---:|---:|" << (any_cb ? "---:|" : "") << "\n";
  auto cell = [](const json::Value* v, const char* f) {
    return v && v->is(json::Value::Number) ? fmt(f, v->num) : std::string("n/a");
  };
  for (const Run& r : runs) {
    const Record* e = r.evals.empty() ? nullptr : &r.evals.back();
    if (!e) warn(r.path + ": no eval record; its eval columns read n/a");
    if (r.steps.empty()) warn(r.path + ": no step records; its MaxVio_batch column reads n/a");
    auto tail = [&](const FieldSpec& f) {
      if (r.steps.empty()) return std::string("n/a");
      const Value v = tail_value(r, f, frac);
      return v.kind == Value::Number && std::isfinite(v.num) ? fmt("%.4f", v.num) : std::string("n/a");
    };
    t << "| " << md_cell(r.label) << " | " << md_cell(describe_balance(r.config)) << " | "
      << (e ? std::to_string(e->step) : "n/a") << " | " << tail(loss) << " | "
      << cell(e ? e->v.find("val_loss") : nullptr, "%.4f") << " | "
      << cell(e ? e->v.find("val_ppl") : nullptr, "%.3f") << " | "
      << cell(e ? e->v.find("maxvio_global") : nullptr, "%.4f") << " | " << tail(mvb) << " |"
      << (any_cb ? " " + tail(mvcb) + " |" : "") << "\n";
  }
  write_output(o.get("out", "-"), t.str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 1 : 0;
  }
  try {
    const std::string cmd = argv[1];
    for (int i = 2; i < argc; ++i)
      if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
        std::fputs(kUsage, stdout);
        return 0;
      }
    if (cmd != "lines" && cmd != "scatter" && cmd != "bars" && cmd != "heatmap" && cmd != "table")
      throw std::runtime_error("unknown chart '" + cmd + "' (lines, scatter, bars, heatmap or table; see plot --help)");
    const Options o = parse_args(argc, argv);
    if (cmd == "lines") return cmd_lines(o);
    if (cmd == "scatter") return cmd_scatter(o);
    if (cmd == "bars") return cmd_bars(o);
    if (cmd == "heatmap") return cmd_heatmap(o);
    return cmd_table(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plot: error: %s\n", e.what());
    return 1;
  }
}
