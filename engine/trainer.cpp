#include "engine/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <sstream>

#include "engine/error.h"
#include "engine/json.h"
#include "engine/numtext.h"
#include "engine/step_graph.h"
#include "kernels/loss/loss.h"
#include "optim/batch_schedule.h"

#ifdef KILN_WITH_CUDA
#include "engine/cuda_check.h"
#endif

namespace kiln {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
}  // namespace

void TrainOptions::validate() const {
  KILN_USAGE_CHECK(epochs >= 0, "--epochs " << epochs << ": must be >= 0");
  // Each epoch's steps are planned up front (schedules span them): 8 bytes an epoch.
  KILN_USAGE_CHECK(epochs <= 1000000, "--epochs " << epochs << ": must be <= 1000000");
  KILN_USAGE_CHECK(batch_size >= 1, "--batch-size " << batch_size << ": must be >= 1");
  KILN_USAGE_CHECK(eval_batch_size >= 1, "--eval-batch-size " << eval_batch_size << ": must be >= 1");
  KILN_USAGE_CHECK(log_every >= 0, "--log-every " << log_every << ": must be >= 0");
  if (!batch_schedule.empty()) parse_batch_schedule(batch_schedule);
  KILN_USAGE_CHECK(sparsity_threshold >= 0 && std::isfinite(sparsity_threshold),
                   "--sparsity-threshold " << sparsity_threshold << ": must be >= 0");
  KILN_USAGE_CHECK(target_acc >= 0 && target_acc <= 1,
                   "--target-acc " << target_acc << ": must be in [0, 1]");
  KILN_USAGE_CHECK(early_stop >= 0, "--early-stop " << early_stop << ": must be >= 0 (epochs)");
  KILN_USAGE_CHECK(early_stop_delta >= 0 && std::isfinite(early_stop_delta),
                   "--early-stop-delta " << early_stop_delta << ": must be >= 0");
  KILN_USAGE_CHECK(early_stop_metric == "loss" || early_stop_metric == "acc",
                   "--early-stop-metric " << early_stop_metric << ": expected loss|acc");
  KILN_USAGE_CHECK(!std::isinf(early_stop_baseline),
                   "--early-stop-baseline " << early_stop_baseline << ": must be finite");
  KILN_USAGE_CHECK(early_stop_start >= 0,
                   "--early-stop-start " << early_stop_start << ": must be >= 0 (epochs)");
  KILN_USAGE_CHECK(early_stop > 0 || (std::isnan(early_stop_baseline) && early_stop_start == 0),
                   (early_stop_start ? "--early-stop-start" : "--early-stop-baseline")
                       << " needs --early-stop N (it shapes early stopping's patience)");
  KILN_USAGE_CHECK(!restore_best || early_stop > 0,
                   "--restore-best needs --early-stop N (the best epoch is the one it watches)");
  // (the apps' float options are finite; a library caller's NaN turned the bound off unsaid)
  KILN_USAGE_CHECK(std::isfinite(max_loss),
                   "--max-loss " << max_loss << ": must be finite (< 0 turns the bound off)");
  KILN_USAGE_CHECK(progress >= -1 && progress <= 1,
                   "progress " << progress << ": expected 1 (bar), 0 (lines) or -1 (auto)");
  KILN_USAGE_CHECK(step_limit >= 0, "step limit " << step_limit << ": must be >= 0 (0: none)");
}

double EpochRecord::held_out(bool acc) const {
  if (!std::isnan(val_acc)) return acc ? val_acc : val_loss;
  if (!std::isnan(test_acc)) return acc ? test_acc : test_loss;
  return acc ? train_acc : train_loss;
}

std::string EpochRecord::to_json() const {
  JsonObject j;
  j.add("type", "epoch").add("epoch", epoch).add("step", step).add("lr", lr);
  if (momentum >= 0) j.add("momentum", momentum);
  j.add("batch_size", batch_size)
      .add("train_loss", train_loss)
      .add("train_acc", train_acc)
      .add("test_loss", test_loss)
      .add("test_acc", test_acc);
  if (!std::isnan(val_acc)) j.add("val_loss", val_loss).add("val_acc", val_acc);
  j.add("grad_norm", grad_norm)
      .add("l1_penalty", l1_penalty)
      .add("l2_penalty", l2_penalty)
      .add("weight_sparsity", weight_sparsity)
      .add("zero_grad_weights", zero_grad_weights)
      .add("seconds", seconds)
      .add("images_per_s", images_per_s);
  return j.str();
}

Trainer::Trainer(Model& model, Optimizer& opt, Schedule& sched, Context& ctx,
                 const TrainOptions& opts)
    : model_(model),
      opt_(opt),
      sched_(sched),
      ctx_(ctx),
      opts_(opts),
      eval_batch_asked_(opts.eval_batch_size) {
  opts_.validate();
  KILN_CHECK(opt.bound_to(model),
             "trainer: the optimizer steps another model's parameters "
             "(make it with make_optimizer(options, this model))");
  acc_ = std::make_shared<Buffer>(3 * sizeof(double), ctx.device());
  zero_bytes(acc_->data(), ctx.device(), acc_->bytes(), ctx.stream());
#ifdef KILN_WITH_CUDA
  if (ctx.cuda()) {
    KILN_CUDA_CHECK(cudaMallocHost(&host_flag_, sizeof(int)));
    *host_flag_ = 0;
    KILN_CUDA_CHECK(cudaEventCreateWithFlags(&flag_event_, cudaEventDisableTiming));
  }
#endif
  if (opts_.cuda_graphs && ctx.cuda()) graph_ = std::make_unique<StepGraph>(ctx, opt);
}

Trainer::~Trainer() {
#ifdef KILN_WITH_CUDA
  if (host_flag_) cudaFreeHost(host_flag_);
  if (flag_event_) cudaEventDestroy(flag_event_);
#endif
}

// One step on a gathered batch, eager or through the CUDA graph. Metrics go into acc_ on the device.
void Trainer::step_batch(const Tensor& x, const Buffer& labels, int64_t n, float lr, float momentum) {
  if (graph_)
    graph_->run(n, x.data(), labels.data(), ctx_.step, lr, momentum,
                [&](const OptimStepArgs* dev) { enqueue_step(x, labels, n, lr, momentum, dev); });
  else
    enqueue_step(x, labels, n, lr, momentum, nullptr);
  ++step_;
  ctx_.step = static_cast<uint64_t>(step_);
  copy_flag();
}

// On CUDA: queues a copy of the optimizer's non-finite flag to the host, read once it lands.
void Trainer::copy_flag() {
#ifdef KILN_WITH_CUDA
  if (ctx_.cuda()) {
    KILN_CUDA_CHECK(cudaMemcpyAsync(host_flag_, opt_.nonfinite_flag(), sizeof(int),
                                    cudaMemcpyDeviceToHost, ctx_.stream()));
    KILN_CUDA_CHECK(cudaEventRecord(flag_event_, ctx_.stream()));
  }
#endif
}

// Softmax cross-entropy of one batch: per-sample loss and correctness, summed into the device
// accumulator acc (loss, correct, count); with dlogits, also the gradient scaled by grad_scale.
void Trainer::loss_and_metrics(const Tensor& logits, const Buffer& labels, int64_t n, float grad_scale,
                               float* dlogits, double* acc) {
  int64_t k = logits.dim(1);
  ensure(sample_loss_, {n}, ctx_.device());
  ensure(sample_correct_, {n}, ctx_.device());
  const auto* y = static_cast<const int32_t*>(labels.data());
  if (ctx_.cuda()) {
#ifdef KILN_WITH_CUDA
    softmax_xent(logits.data(), y, n, k, grad_scale, dlogits, sample_loss_.data(), sample_correct_.data(),
                 ctx_.stream());
    accumulate_sums(sample_loss_.data(), sample_correct_.data(), n, acc, ctx_.stream());
#endif
  } else {
    softmax_xent_ref<float>(logits.data(), y, n, k, grad_scale, dlogits, sample_loss_.data(),
                            sample_correct_.data());
    accumulate_sums_ref(sample_loss_.data(), sample_correct_.data(), n, acc);
  }
}

void Trainer::enqueue_step(const Tensor& x, const Buffer& labels, int64_t n, float lr, float momentum,
                           const OptimStepArgs* dev) {
  Tensor logits = model_.forward(ctx_, x);
  ensure(dlogits_, logits.shape(), ctx_.device());
  loss_and_metrics(logits, labels, n, 1.0f / static_cast<float>(n), dlogits_.data(),
                   static_cast<double*>(acc_->data()));
  model_.backward(ctx_, dlogits_);
  if (dev) opt_.step_device(ctx_, dev);
  else opt_.step(ctx_, lr, momentum);
}

float Trainer::last_loss() {
  std::vector<float> l = sample_loss_.to_vector();
  double s = 0;
  for (float v : l) s += v;
  return l.empty() ? NAN : static_cast<float>(s / l.size());
}

// Throws Diverged when the optimizer has seen a non-finite gradient. Without sync, looks only
// at a flag copy that has already landed (a step or more late, harmless: bad steps are
// skipped); the flag holds the first bad step's count, so the message names that step.
void Trainer::check_nonfinite(bool sync, int epoch) {
  int flag = 0;
  if (ctx_.cuda()) {
#ifdef KILN_WITH_CUDA
    if (sync) {
      KILN_CUDA_CHECK(cudaEventSynchronize(flag_event_));
      flag = *host_flag_;
    } else {
      const cudaError_t q = cudaEventQuery(flag_event_);
      if (q == cudaErrorNotReady)
        (void)cudaGetLastError();  // still in flight, not an error: the next launch check must not
                                   // see it
      else
        KILN_CUDA_CHECK(q);  // an earlier asynchronous failure surfaces here
      flag = q == cudaSuccess ? *host_flag_ : 0;
    }
#else
    (void)sync;
#endif
  } else {
    flag = *opt_.nonfinite_flag();
  }
  if (flag == 0) return;
  // The flag counts optimizer steps; the trainer's count of the same step:
  const long long bad_step = step_ - (opt_.steps_taken() - flag);
  // The per-layer norms are the latest step's: on CUDA the flag may be read steps after the
  // bad one, so then the diagnosis says which step it looked at.
  StepStats st = opt_.stats(ctx_);
  const std::string latest =
      bad_step == step_ ? "" : " at step " + std::to_string(step_) + " (the latest)";
  const auto& refs = model_.param_refs();
  std::string where = "no single layer identified (the gradients" + latest + " are finite)";
  for (size_t i = refs.size(); i-- > 0;) {
    if (i < st.tensor_grad_norms.size() && !std::isfinite(st.tensor_grad_norms[i])) {
      where = "first non-finite gradient in backward order" + latest + ": layer " + refs[i].layer +
              " (" + refs[i].layer_type + ") " + refs[i].name;
      break;
    }
  }
  throw_error(ErrorKind::Diverged,
              "training diverged: non-finite loss/gradient at epoch " + std::to_string(epoch + 1) +
                  " step " + std::to_string(bad_step) + "; " + where + divergence_hint(),
              __FILE__, __LINE__);
}

std::string Trainer::divergence_hint() const {
  const OptimOptions& o = opt_.options();
  return o.clipnorm > 0 || o.global_clipnorm > 0 || o.clipvalue > 0
             ? " (try a lower --lr)"
             : " (try a lower --lr or --global-clipnorm)";
}

std::string Trainer::largest_grad_layer() {
  StepStats st = opt_.stats(ctx_);
  const auto& refs = model_.param_refs();
  size_t best = refs.size();
  for (size_t i = 0; i < refs.size() && i < st.tensor_grad_norms.size(); ++i)
    if (best == refs.size() || st.tensor_grad_norms[i] > st.tensor_grad_norms[best]) best = i;
  if (best == refs.size()) return "";
  ClassicOStringStream os;
  os << "; largest gradient norm: layer " << refs[best].layer << " (" << refs[best].layer_type << ") "
     << refs[best].name << " = " << st.tensor_grad_norms[best];
  return os.str();
}

double Trainer::loss_bound() const {
  double k = model_.output_shape().empty() ? 10.0 : static_cast<double>(model_.output_shape()[0]);
  return opts_.max_loss > 0 ? opts_.max_loss : 100.0 * std::log(std::max(k, 2.0));
}

bool Trainer::within_loss_bound(double loss) const {
  // --max-loss < 0 turns off the bound on a finite loss; a non-finite one always diverged.
  return std::isfinite(loss) && (opts_.max_loss < 0 || loss <= loss_bound());
}

std::string Trainer::loss_bound_text(double loss, int epoch, const char* what) {
  ClassicOStringStream os;
  os << what << " ";
  if (std::isnan(loss))
    os << "nan";  // not the stream's "-nan" of a negative-signed NaN
  else
    os << loss;
  os << " in epoch " << epoch + 1 << " (step " << step_ << ")"
     << (std::isfinite(loss) ? " exceeds the divergence bound " + format_c("%g", loss_bound()) +
                                   " (--max-loss; default 100x the chance-level loss)"
                             : "")
     << largest_grad_layer();
  return os.str();
}

void Trainer::check_loss_bound(double loss, int epoch, const char* what) {
  if (within_loss_bound(loss)) return;
  throw_error(ErrorKind::Diverged,
              "training diverged: " + loss_bound_text(loss, epoch, what) + divergence_hint(),
              __FILE__, __LINE__);
}

void Trainer::check_dataset(const Dataset& ds) {
  const Shape& out = model_.output_shape();
  KILN_USAGE_CHECK(out.size() == 1, "model output "
                                        << shape_str(out)
                                        << " per sample: the softmax cross-entropy needs one "
                                           "vector of class scores (end with GlobalAvgPool or "
                                           "Flatten + Linear)");
  const int64_t n = ds.size(), classes = out[0];
  if (n == 0) return;
  // The samples' shape and device, before any step: a held-out set of another shape failed
  // only in the first epoch's evaluation, after that epoch had trained.
  KILN_USAGE_CHECK(ds.sample_shape() == model_.input_shape(),
                   ds.name << ": samples " << shape_str(ds.sample_shape()) << ", the model takes "
                           << shape_str(model_.input_shape()));
  KILN_CHECK(ds.device() == ctx_.device(), ds.name << ": on " << device_name(ds.device())
                                                   << ", the model on "
                                                   << device_name(ctx_.device()));
  ds.check_labels();  // the buffer the loss reads (host_labels is only a mirror)
  const size_t bytes = static_cast<size_t>(n) * sizeof(int32_t);
  std::vector<int32_t> copied;
  const int32_t* y = ds.label_data();
  if (ds.device() != Device::CPU) {
    copied.resize(static_cast<size_t>(n));
    copy_bytes(copied.data(), Device::CPU, ds.label_data(), ds.device(), bytes, ctx_.stream());
    ctx_.sync();
    y = copied.data();
  }
  for (int64_t i = 0; i < n; ++i)
    KILN_CHECK(y[i] >= 0 && y[i] < classes, ds.name << ": label " << y[i] << " of sample " << i
                                                    << " is outside the model's " << classes
                                                    << " classes [0, " << classes << ")");
}

EvalResult Trainer::evaluate(const Dataset& ds) {
  // The evaluation batch only sets how many samples go through at once (the sums are the same
  // samples'), so one that runs out of memory, host or device, is halved and the evaluation
  // starts over, down to batches of 1, rather than failing a run whose epoch has trained (as
  // Hugging Face Accelerate's find_executable_batch_size does for its batches). The layers'
  // buffers, grown to the failed batch as far as it got, are freed first. The smaller size
  // stays for this trainer's later evaluations; log says so each time. Only the batches'
  // allocations are retried: the dataset's checks and the sample order (one index a sample)
  // need as much memory at any batch.
  for (;;) {
    const int64_t batch = std::min(opts_.eval_batch_size, ds.size());
    bool batching = false;
    try {
      return with_memory_context(
          [&] {
            return "evaluating " + ds.name + " at --eval-batch-size " + std::to_string(batch);
          },
          [&] { return evaluate_impl(ds, &batching); });
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::OutOfMemory || !batching) throw;
      if (batch <= 1) {
        // (not when asked for 1, nor for a set of one sample at a larger size)
        if (opts_.eval_batch_size > 1 || eval_batch_asked_ <= 1) throw;
        throw e.suffixed(" (--eval-batch-size " + std::to_string(eval_batch_asked_) +
                         " was halved down to 1)");
      }
      model_.release_scratch();  // (evaluate_impl invalidated the graph before any batch)
      sample_loss_ = Tensor();
      sample_correct_ = Tensor();
      opts_.eval_batch_size = batch / 2;
      if (log)
        log("note: " + e.message() + "; evaluating at --eval-batch-size " +
            std::to_string(opts_.eval_batch_size) + " from here on");
    }
  }
}

EvalResult Trainer::evaluate_impl(const Dataset& ds, bool* batching) {
  check_dataset(ds);
  // An empty set scores nothing: count 0, NaN loss and accuracy (fit with an empty held-out
  // set trained an epoch, then threw from here).
  if (ds.size() == 0) return EvalResult{NAN, NAN, 0};
  // The forward passes below replace the buffers layers hold from the last training step: a
  // captured graph would point at freed memory, and a capture must not free the evaluation's.
  if (graph_) graph_->invalidate();
  // The caller's mode comes back however this ends: a forward that throws left the context in
  // eval mode (dropout off, batch norm on running statistics) for the caller's next step.
  struct RestoreMode {
    Context& ctx;
    const bool training;
    ~RestoreMode() { ctx.training = training; }
  } restore{ctx_, ctx_.training};
  model_.eval(ctx_);
  Buffer acc(3 * sizeof(double), ctx_.device());
  zero_bytes(acc.data(), ctx_.device(), acc.bytes(), ctx_.stream());
  BatchIterator it(ds, opts_.eval_batch_size, false, 0);
  it.start_epoch(0, ctx_.stream());
  *batching = true;  // from here on, memory runs out for the batch's size
  Tensor x;
  Buffer y;
  int64_t n = 0;
  for (int64_t b = 0; it.batch(b, x, y, n, ctx_.stream()); ++b) {
    Tensor logits = model_.forward(ctx_, x);
    loss_and_metrics(logits, y, n, 1.0f, nullptr, static_cast<double*>(acc.data()));
  }
  double h[3];
  copy_bytes(h, Device::CPU, acc.data(), ctx_.device(), sizeof(h), ctx_.stream());
  ctx_.sync();
  EvalResult r;
  r.count = static_cast<int64_t>(h[2]);
  r.loss = h[2] > 0 ? h[0] / h[2] : NAN;
  r.acc = h[2] > 0 ? h[1] / h[2] : NAN;
  return r;
}

// Counts the weight tensors whose last-step gradient is exactly 0 and names the last of them
// (in forward order): everything up to it is cut off from the loss.
std::string Trainer::zero_grad_weights(const StepStats& st, int* count) const {
  const auto& refs = model_.param_refs();
  // With --l1/--l2 the norms are of g + the penalty's gradient, never 0 on nonzero weights (a
  // dead net went unreported): then the loss's own gradients, flat_grads(), decide.
  const OptimOptions& oo = opt_.options();
  std::vector<float> raw;
  if (oo.l1 > 0 || oo.l2 > 0) raw = model_.flat_grads().to_vector();
  std::string last;
  *count = 0;
  const auto raw_zero = [&raw](const Param& p) {
    const float* g = raw.data() + p.offset;
    return std::all_of(g, g + shape_numel(p.shape), [](float v) { return v == 0.0f; });
  };
  for (size_t i = 0; i < refs.size() && i < st.tensor_grad_norms.size(); ++i) {
    if (!refs[i].param->decay) continue;
    if (raw.empty() ? st.tensor_grad_norms[i] == 0.0f : raw_zero(*refs[i].param)) {
      ++*count;
      last = refs[i].name;
    }
  }
  return last;
}

std::string dead_gradient_warning(int epoch, int count, const std::string& last) {
  ClassicOStringStream os;
  os << "warning: epoch " << epoch << ": the gradient of " << count << " weight tensor"
     << (count == 1 ? "" : "s") << " (up to " << last
     << ") was exactly 0 at the last step: dead ReLUs (every activation <= 0) cut them off from "
        "the loss; lower --lr, or add --norm batch";
  return os.str();
}

std::string Trainer::grad_report() const {
  StepStats st = opt_.stats(ctx_);
  ClassicOStringStream os;
  os << "  per-layer norms (last step):\n  " << std::left << std::setw(24) << "tensor" << std::right
     << std::setw(14) << "grad_norm" << std::setw(14) << "weight_norm" << "\n";
  const auto& refs = model_.param_refs();
  for (size_t i = 0; i < refs.size(); ++i) {
    os << "  " << std::left << std::setw(24) << refs[i].name << std::right << std::setw(14)
       << std::setprecision(4) << (i < st.tensor_grad_norms.size() ? st.tensor_grad_norms[i] : NAN)
       << std::setw(14) << (i < st.tensor_weight_norms.size() ? st.tensor_weight_norms[i] : NAN) << "\n";
  }
  return os.str();
}

TrainPosition Trainer::position() {
  TrainPosition p = pos_;
  // Mid-epoch, the metric sums so far live on the device once this fit has trained in that
  // epoch; before (a resume that trains no epoch) they are still the ones it was given.
  if (p.batch > 0 && acc_epoch_ == p.epoch) {
    copy_bytes(p.train_sums, Device::CPU, acc_->data(), ctx_.device(), sizeof(p.train_sums), ctx_.stream());
    ctx_.sync();
  }
  return p;
}

std::vector<EpochRecord> Trainer::fit(const Dataset& train, const Dataset* test, int start_epoch) {
  TrainPosition from;
  from.epoch = start_epoch;
  from.step = step_;
  return fit(train, test, from);
}

std::vector<EpochRecord> Trainer::fit(const Dataset& train, const Dataset* test, const TrainPosition& from) {
  check_fit(train, test, from);
  JsonlWriter jsonl(opts_.log_path, from.epoch > 0 || from.batch > 0);
  if (on_start) on_start();
  try {
    return fit_epochs(train, test, from, jsonl);
  } catch (const Error& e) {
    // The log says how the run ended, as it does for early stopping: a reader (plot.py, a
    // notebook) sees a diverged run, not one that simply has fewer epochs.
    if (e.kind() == ErrorKind::Diverged && jsonl.open()) {
      JsonObject j;
      j.add("type", "diverged")
          .add("epoch", pos_.epoch + 1)
          .add("step", step_)
          .add("message", e.message());
      try {  // a log that cannot take the record must not turn the divergence into another error
        jsonl.write(j.str());
      } catch (const Error&) {
      }
    }
    throw;
  }
}

// What fit() refuses before it opens the log (a refused fit truncated it) or takes a step.
void Trainer::check_fit(const Dataset& train, const Dataset* test, const TrainPosition& from) {
  KILN_USAGE_CHECK(
      from.epoch >= 0 && from.batch >= 0 && from.step >= from.batch && from.step <= kMaxStepCount,
      "fit: position epoch " << from.epoch << ", batch " << from.batch << ", step " << from.step
                             << ": negative, fewer steps than batches, or past 1e15");
  // Before the first step, so a bad held-out label does not cost an epoch of training.
  for (const Dataset* ds : {&train, test, val_set})
    if (ds) check_dataset(*ds);
  KILN_CHECK(train.size() > 0, train.name << ": cannot train on an empty dataset");
  // (refused by its batches' iterator, after the log was opened and emptied, until 2026-12-07)
  if (opts_.augment) check_augmentable(train);
  std::vector<std::pair<int, int>> bsched;
  if (!opts_.batch_schedule.empty()) bsched = parse_batch_schedule(opts_.batch_schedule);
  // A batch a layer cannot train on (batch norm's batch of 1 without spatial dimensions) is
  // found now, not when the epoch that ends in it has trained.
  long long last_step = from.step;  // of the epoch's last batch, counting from 1
  for (int epoch = from.epoch; epoch < opts_.epochs; ++epoch) {
    const int64_t b = bsched.empty() ? opts_.batch_size : batch_size_at(bsched, epoch);
    const int64_t n = train.size(), batches = n / b + (n % b != 0),  // (b may be huge)
        smallest = n % b != 0 ? n % b : std::min(b, n);
    // A position past its epoch's last batch (a library caller's; a checkpoint's is checked
    // against the run's batch options by the apps) trained nothing, then read past the data.
    // At it is an epoch whose batches are all done: checkpoints before 2026-12-02 saved a step
    // checkpoint on an epoch's last batch so, and fit_epochs finishes that epoch.
    KILN_USAGE_CHECK(epoch != from.epoch || from.batch <= batches,
                     "fit: position batch " << from.batch << " of epoch " << from.epoch + 1
                                            << ", which has " << batches << " batches");
    const long long first_step = last_step + 1;  // (the epoch's first step to train)
    last_step += batches - (epoch == from.epoch ? from.batch : 0);
    if (opts_.step_limit > 0 && first_step > opts_.step_limit) break;
    const auto [name, layer] = model_.layer_refusing_batch(smallest);
    // Every batch too small (--batch-size 1, or a training set that small) is refused whatever
    // the step limit, with advice to raise the batch (no limit or split leaves none over); only
    // a last, partial batch too small can lie past the limit (the LR range test's) and be taken.
    const bool all_too_small = layer && std::min(b, n) < layer->min_training_batch();
    if (!all_too_small && opts_.step_limit > 0 && last_step > opts_.step_limit) break;
    const auto why = [&] {
      if (all_too_small)
        return "'s are of " + std::to_string(std::min(b, n)) + " (" +
               (b <= n ? (bsched.empty() ? "--batch-size " : "--batch-schedule's ") +
                             std::to_string(b) + "): " +
                             (bsched.empty() ? "raise --batch-size" : "raise its batch size")
                       : std::to_string(n) + (n == 1 ? " training image" : " training images") +
                             "): train on more images");
      return " ends in a batch of " + std::to_string(smallest) + " (" + std::to_string(n) +
             " training images in batches of " + std::to_string(b) + "): change " +
             (bsched.empty() ? "--batch-size" : "--batch-schedule") +
             (val_set ? ", --train-limit or --val-split" : " or --train-limit") +
             " so none is left over";
    };
    KILN_USAGE_CHECK(
        !layer, "layer " << name << " (" << layer->describe() << ") trains on batches of at least "
                         << layer->min_training_batch() << ", and epoch " << epoch + 1 << why());
  }
}

std::vector<EpochRecord> Trainer::fit_epochs(const Dataset& train, const Dataset* test,
                                             const TrainPosition& from, JsonlWriter& jsonl) {
  set_step(from.step);
  pos_ = from;
  // The flag as it is now: a checkpoint loaded since the last fit cleared it on the device,
  // and the host copy of that fit's last step would fail this one at its first check.
  copy_flag();

  // The steps each finished epoch took (one a batch), kept only while they account for every
  // step (a position without them, from an older checkpoint, or a fit() after other steps on
  // this trainer, records none).
  // (a library caller's entries may be anything: added only while they stay within the step)
  std::vector<long long> epoch_steps = from.epoch_steps;
  long long counted = from.batch;
  bool steps_known = epoch_steps.size() == static_cast<size_t>(from.epoch);
  for (long long s : epoch_steps) {
    steps_known = steps_known && s >= 0 && s <= from.step - counted;
    if (steps_known) counted += s;
  }
  steps_known = steps_known && counted == from.step;
  if (!steps_known) epoch_steps.clear();
  pos_.epoch_steps = epoch_steps;
  acc_epoch_ = -1;
  stopped_ = false;
  auto stop_requested = [this] { return stop_flag && *stop_flag != 0; };
  auto checkpoint = [this](const char* why) {
    if (on_checkpoint) on_checkpoint(position(), why);
  };
  BatchIterator it(train, opts_.batch_size, opts_.shuffle, ctx_.seed, opts_.augment);
  std::vector<std::pair<int, int>> bsched;
  if (!opts_.batch_schedule.empty()) bsched = parse_batch_schedule(opts_.batch_schedule);
  std::vector<EpochRecord> out;
  bool tty = opts_.progress == 1;
  const char* watched_set = val_set ? "val" : test ? "test" : "train";
  restored_epoch_ = 0;
  // A run that reaches --target-acc ends on that epoch's weights: --restore-best does not go back
  // to an earlier "best" epoch (by the early-stopping metric) that missed the target (Keras 3's
  // EarlyStopping would restore it whatever stopped the run; the target is the run's goal).
  bool reached_target = false;
  bool step_said_stop = false;  // on_step returned false: the epoch ends there, the run too
  // --restore-best has weights to load back: the last epoch was not the best (every way out of
  // the loop but a signal leaves pos_ at the start of the next epoch).
  auto best_is_earlier = [&] {
    return opts_.restore_best && !best_.empty() && pos_.early_stop.best_epoch != pos_.epoch;
  };
  // A run resumed from the checkpoint of the epoch that reached --target-acc stops there too,
  // and keeps that epoch's weights as the uninterrupted run did, also when it was the last epoch
  // (no epoch left to train: until 2026-12-07 such a resume restored an earlier "best" epoch).
  if (from.batch == 0 && opts_.target_acc > 0 && from.watched_acc >= opts_.target_acc) {
    if (log && from.epoch < opts_.epochs) {
      ClassicOStringStream os;
      os << "target accuracy " << opts_.target_acc << " was reached before epoch " << from.epoch + 1
         << " (" << watched_set << "_acc " << from.watched_acc << "): nothing to train";
      log(os.str());
    }
    reached_target = true;
  }
  for (int epoch = from.epoch; !reached_target && epoch < opts_.epochs; ++epoch) {
    // Early stopping is decided after an epoch and acted on before the next, so a run resumed
    // from the checkpoint of its stopping epoch stops too. One resumed inside an epoch (with a
    // smaller --early-stop than the run had) finishes that epoch first.
    if (!(epoch == from.epoch && from.batch > 0) &&
        pos_.early_stop.stops(opts_.early_stop, epoch)) {
      if (log) {
        const EarlyStopState& es = pos_.early_stop;
        const EarlyStopRule rule = opts_.early_stop_rule();
        const char* epochs = es.wait == 1 ? " epoch" : " epochs";
        ClassicOStringStream os;
        os << "early stopping before epoch " << epoch + 1 << ": " << watched_set << "_"
           << opts_.early_stop_metric;
        if (!std::isnan(rule.baseline) && !rule.beats(es.best, rule.baseline))
          os << " has not beaten the baseline " << rule.baseline << " by more than "
             << rule.min_delta << " in " << es.wait << epochs << " (best " << es.best << ", epoch "
             << es.best_epoch << ")";
        else
          os << " has not improved on " << es.best << " (epoch " << es.best_epoch
             << ") by more than " << rule.min_delta << " for " << es.wait << epochs;
        log(os.str());
      }
      if (jsonl.open()) {
        JsonObject j;
        j.add("type", "early_stop")
            .add("epoch", epoch)
            .add("metric", std::string(watched_set) + "_" + opts_.early_stop_metric)
            .add("best", pos_.early_stop.best)
            .add("best_epoch", pos_.early_stop.best_epoch)
            .add("wait", pos_.early_stop.wait);
        if (!std::isnan(opts_.early_stop_baseline)) j.add("baseline", opts_.early_stop_baseline);
        jsonl.write(j.str());
      }
      break;
    }
    auto t0 = Clock::now();
    model_.train(ctx_);
    if (graph_) graph_->invalidate();  // evaluation may have moved layer buffers
    bool resuming = epoch == from.epoch && from.batch > 0;
    zero_bytes(acc_->data(), ctx_.device(), acc_->bytes(), ctx_.stream());
    if (resuming) {
      copy_bytes(acc_->data(), ctx_.device(), from.train_sums, Device::CPU, sizeof(from.train_sums), ctx_.stream());
      ctx_.sync();
    }
    acc_epoch_ = epoch;
    // Batch-size schedule: the batch in force this epoch; with scale_lr the schedule's lr is
    // scaled by batch / first batch (the linear scaling rule).
    float lr_scale = 1.0f;
    if (!bsched.empty()) {
      int bs = batch_size_at(bsched, epoch);
      it.set_batch_size(bs);
      if (opts_.scale_lr_with_batch) lr_scale = scale_lr_linear(1.0f, bsched.front().second, bs);
    }
    it.start_epoch(epoch, ctx_.stream());
    int64_t nb = it.batches_per_epoch();
    float lr = resuming ? from.last_lr : 0, mom = resuming ? from.last_momentum : -1;
    int64_t n = 0, seen = 0;
    int64_t first = resuming ? from.batch : 0;  // batches a resumed epoch already did
    bool epoch_end_checkpoint = false;          // a step checkpoint that fell on the last batch
    pos_ = TrainPosition{epoch, first, step_, {0, 0, 0}, lr, mom, pos_.early_stop};
    pos_.epoch_steps = epoch_steps;
    const long long epoch_first_step = step_ - first;  // one optimizer step a batch
    bool warned_bound = false;  // --detect-anomaly named a step past --max-loss this epoch
    for (int64_t b = first; it.batch(b, batch_x_, batch_y_, n, ctx_.stream()); ++b) {
      check_nonfinite(opts_.detect_anomaly, epoch);
      lr = sched_.lr(epoch, step_) * lr_scale;
      mom = sched_.momentum(epoch, step_);
      with_memory_context(
          [&] { return "a training step of " + std::to_string(n) + " images (--batch-size)"; },
          [&] { step_batch(batch_x_, batch_y_, n, lr, mom); });
      seen += n;
      // --detect-anomaly stops at a non-finite step, as a run without it does (later, at the
      // next step or the epoch end). A finite step past --max-loss is only named, once an epoch:
      // the epoch's mean train loss decides, with or without the flag, so a diagnostic option
      // never changes a run's outcome (until 2026-12-07 such a step stopped the run).
      if (opts_.detect_anomaly) {
        float l = last_loss();
        check_nonfinite(true, epoch);
        if (!std::isfinite(l)) check_loss_bound(l, epoch, "loss");
        if (!warned_bound && !within_loss_bound(l)) {
          warned_bound = true;
          if (log)
            log("warning: " + loss_bound_text(l, epoch, "loss") +
                "; the epoch's mean train loss decides whether the run stops");
        }
      }
      if (opts_.log_every > 0 && step_ % opts_.log_every == 0 && jsonl.open()) {
        StepStats st = opt_.stats(ctx_);
        JsonObject j, layers;
        const auto& refs = model_.param_refs();
        for (size_t i = 0; i < refs.size() && i < st.tensor_grad_norms.size(); ++i) {
          JsonObject l;
          l.add("grad_norm", st.tensor_grad_norms[i]).add("weight_norm", st.tensor_weight_norms[i]);
          layers.add_raw(refs[i].name, l.str());
        }
        j.add("type", "step").add("epoch", epoch + 1).add("step", step_).add("lr", lr);
        if (mom >= 0) j.add("momentum", mom);
        j.add("loss", last_loss()).add("grad_norm", st.grad_norm).add_raw("layers", layers.str());
        jsonl.write(j.str());
      }
      pos_.batch = b + 1;
      pos_.step = step_;
      pos_.last_lr = lr;
      pos_.last_momentum = mom;
      // After the epoch's last batch the epoch end (its metrics, evaluation and record) is
      // what is left: a checkpoint or a signal then waits for it, so a resume never starts an
      // epoch with no batches to run (its record would lack the last step's statistics).
      const bool last = b + 1 == nb;
      const bool stop = stop_requested() && !last;
      const bool step_due = checkpoint_every_steps > 0 && step_ % checkpoint_every_steps == 0;
      if (stop || (step_due && !last)) {
        check_nonfinite(true, epoch);  // a diverged run is not checkpointed as if it were fine
        checkpoint(stop ? "signal" : "step");
      }
      if (stop) {
        stopped_ = true;
        return out;
      }
      if (step_due && last) epoch_end_checkpoint = true;
      if (on_step && !on_step(step_, lr)) {
        step_said_stop = true;
        break;
      }
      if (tty && log && (b % 20 == 0 || b + 1 == nb)) {
        double el = seconds_since(t0);
        double ips = seen / std::max(el, 1e-9);
        double eta = (nb - b - 1) * el / (b + 1 - first);  // this run's batches took el
        int w = 30, filled = static_cast<int>(w * (b + 1) / nb);
        ClassicOStringStream os;
        os << "\repoch " << epoch + 1 << "/" << opts_.epochs << " [" << std::string(filled, '=')
           << std::string(w - filled, ' ') << "] " << b + 1 << "/" << nb << "  " << std::fixed
           << std::setprecision(0) << ips << " img/s  ETA " << std::setprecision(1) << eta << "s";
        log(os.str());
      }
    }
    // Epoch end: one synchronisation, then metrics.
    double h[3];
    copy_bytes(h, Device::CPU, acc_->data(), ctx_.device(), sizeof(h), ctx_.stream());
    ctx_.sync();
    check_nonfinite(true, epoch);
    EpochRecord r;
    r.epoch = epoch + 1;
    r.step = step_;
    r.lr = lr;
    r.momentum = mom;
    r.batch_size = it.batch_size();
    r.train_loss = h[2] > 0 ? h[0] / h[2] : NAN;
    r.train_acc = h[2] > 0 ? h[1] / h[2] : NAN;
    check_loss_bound(r.train_loss, epoch, "train loss");
    double train_seconds = seconds_since(t0);
    r.weight_sparsity = model_.weight_sparsity(opts_.sparsity_threshold);
    if (seen > 0) {
      StepStats st = opt_.stats(ctx_);
      r.grad_norm = st.grad_norm;
      r.l1_penalty = st.l1_penalty;
      r.l2_penalty = st.l2_penalty;
      std::string dead = zero_grad_weights(st, &r.zero_grad_weights);
      if (!dead.empty() && log) log(dead_gradient_warning(epoch + 1, r.zero_grad_weights, dead));
    } else {  // a resume at the end of an epoch's batches (checkpoints before 2026-12-02): no
              // step of this epoch ran here, so its last step's statistics are unknown
      r.grad_norm = r.l1_penalty = r.l2_penalty = NAN;
    }
    if (val_set) {
      EvalResult e = evaluate(*val_set);
      r.val_loss = e.loss;
      r.val_acc = e.acc;
    }
    if (test) {
      EvalResult e = evaluate(*test);
      r.test_loss = e.loss;
      r.test_acc = e.acc;
    }
    // The last step's update can leave weights whose forward pass overflows although every
    // gradient was finite (no later step sees them): the held-out loss shows it. Only a
    // non-finite one counts (a large finite one is overfitting, not divergence).
    if (val_set && val_set->size() > 0 && !std::isfinite(r.val_loss))
      check_loss_bound(r.val_loss, epoch, "validation loss");
    if (test && test->size() > 0 && !std::isfinite(r.test_loss))
      check_loss_bound(r.test_loss, epoch, "test loss");
    r.seconds = train_seconds;
    r.images_per_s = seen / std::max(train_seconds, 1e-9);
    // The plateau schedule and target_acc watch the validation split, else the test set, else
    // the training set: the accuracy in plateau mode max, the loss in mode min.
    const bool held_out = val_set || test;
    const double watched_loss = r.held_out(false), watched_acc = r.held_out(true);
    const double watched = sched_.watches_accuracy() ? watched_acc : watched_loss;
    sched_.on_epoch_end(epoch, watched);
    if (std::string note = sched_.take_note(); !note.empty() && log)
      log("warning: epoch " + std::to_string(epoch + 1) + ": " + note);
    if (opts_.early_stop > 0) {
      const EarlyStopRule rule = opts_.early_stop_rule();
      if (pos_.early_stop.update(rule.maximize ? watched_acc : watched_loss, rule, epoch + 1) &&
          opts_.restore_best) {
        ctx_.sync();
        best_.clear();
        for (auto& [name, t] : model_.state_dict()) best_.emplace_back(name, t.to(Device::CPU));
      }
    }
    if (jsonl.open()) jsonl.write(r.to_json());
    history_.push_back(r);
    out.push_back(r);
    if (opts_.grad_report && log) log(grad_report());
    bool go_on = on_epoch ? on_epoch(r) : true;
    // Checkpoint after the JSONL record: a kill in between repeats the record on resume
    // rather than losing it.
    if (steps_known) epoch_steps.push_back(step_ - epoch_first_step);
    pos_ = TrainPosition{epoch + 1, 0, step_, {0, 0, 0}, lr, mom, pos_.early_stop};
    pos_.epoch_steps = epoch_steps;
    if (held_out) pos_.watched_acc = watched_acc;
    // A signal stops the run here unless this epoch ends it anyway (its last, the target
    // reached, early stopping, on_epoch's no: a sweep's pruning): then the run finishes as it
    // would have, exit 0 and its --save (a pruned trial is recorded as such).
    const bool target_reached = opts_.target_acc > 0 && held_out && watched_acc >= opts_.target_acc;
    const bool ends = epoch + 1 >= opts_.epochs || target_reached || !go_on || step_said_stop ||
                      pos_.early_stop.stops(opts_.early_stop, epoch + 1);
    bool stop = stop_requested() && !ends;
    if (stop || epoch_end_checkpoint ||
        (checkpoint_every_epochs > 0 && (epoch + 1) % checkpoint_every_epochs == 0))
      checkpoint(stop ? "signal" : "epoch");
    if (stop) {
      stopped_ = true;
      return out;
    }
    if (target_reached) {
      reached_target = true;
      if (log) {
        ClassicOStringStream os;
        os << "target accuracy " << opts_.target_acc << " reached at epoch " << epoch + 1 << " ("
           << watched_set << "_acc " << watched_acc << "): stopping"
           << (best_is_earlier() ? " with this epoch's weights (--restore-best keeps them)" : "");
        log(os.str());
      }
      break;
    }
    if (!go_on || step_said_stop) break;
  }
  // --restore-best: load the best epoch's weights back unless the last epoch was the best.
  if (!reached_target && best_is_earlier()) {
    auto sd = model_.state_dict();
    KILN_CHECK(sd.size() == best_.size(), "restore-best: the snapshot does not match the model");
    ctx_.sync();
    for (size_t i = 0; i < sd.size(); ++i) {
      Tensor& t = sd[i].second;
      copy_bytes(t.data(), t.device(), best_[i].second.data(), Device::CPU, t.bytes());
    }
    ctx_.sync();
    restored_epoch_ = pos_.early_stop.best_epoch;
    JsonObject j;
    j.add("type", "restore_best").add("epoch", restored_epoch_).add("best", pos_.early_stop.best);
    ClassicOStringStream os;
    os << "restored the weights of epoch " << restored_epoch_ << " (" << watched_set << "_"
       << opts_.early_stop_metric << " " << pos_.early_stop.best << ")";
    if (test) {
      restored_test_ = evaluate(*test);
      j.add("test_loss", restored_test_.loss).add("test_acc", restored_test_.acc);
      os << ": test_acc " << restored_test_.acc << " test_loss " << restored_test_.loss;
    }
    if (jsonl.open()) jsonl.write(j.str());
    if (log) log(os.str());
  }
  return out;
}

void Trainer::set_best_snapshot(std::vector<std::pair<std::string, Tensor>> s) {
  auto sd = model_.state_dict();
  KILN_CHECK(s.empty() || s.size() == sd.size(),
             "restore-best snapshot: " << s.size() << " tensors, the model has " << sd.size());
  for (size_t i = 0; i < s.size(); ++i)
    KILN_CHECK(s[i].first == sd[i].first && s[i].second.shape() == sd[i].second.shape(),
               "restore-best snapshot: tensor " << s[i].first << " does not match the model's "
                                                << sd[i].first);
  best_ = std::move(s);
}

}  // namespace kiln
