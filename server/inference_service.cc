// InferenceService: Generate (server-streamed), Score, Classify and Sample (server-streamed)
// against a served model version, on the callback API (the computation runs on the service's
// inference workers). Transport only: proto <-> core conversion around the free functions of
// core/app/text_inference.h and core/app/image_inference.h.
#include "server/inference_service.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>

#include "core/app/image_inference.h"
#include "core/app/text_inference.h"
#include "core/common/torch_status.h"
#include "core/io/png.h"
#include "core/models/logit_difference.h"
#include "core/models/model.h"
#include "server/proto_convert.h"

namespace unlearning::server {
namespace {

using Clock = std::chrono::steady_clock;

struct ResolvedLm {
  std::shared_ptr<const ServedVersion> version;  // keeps the model alive during the call
  const core::LanguageModel* lm = nullptr;
  // A ULD composite with this query's logit_difference settings (lm points at it), or null.
  std::unique_ptr<core::LogitDifferenceLm> query_view;
};

absl::StatusOr<ResolvedLm> ResolveLm(ModelManager* models, const std::string& model_id,
                                     int64_t version, const v1::LogitDifferenceOptions* uld) {
  if (model_id.empty()) return absl::InvalidArgumentError("model_id is required");
  auto served = models->Resolve(model_id, version);
  if (!served.ok()) return served.status();
  const core::LanguageModel* lm = (*served)->model->AsLanguageModel();
  if (lm == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", model_id, "' is not a causal language model: Generate and Score need one"));
  }
  ResolvedLm resolved{*std::move(served), lm, nullptr};
  if (uld != nullptr && (uld->has_alpha() || uld->has_filter_rate())) {
    auto view = core::LogitDifferenceLm::WithQuerySettings(
        resolved.version->model,
        uld->has_alpha() ? std::optional<double>(uld->alpha()) : std::nullopt,
        uld->has_filter_rate() ? std::optional<double>(uld->filter_rate()) : std::nullopt);
    if (!view.ok()) {
      return absl::Status(view.status().code(),
                          absl::StrCat("model '", model_id, "' version ", resolved.version->version,
                                       ": ", view.status().message()));
    }
    resolved.query_view = *std::move(view);
    resolved.lm = resolved.query_view.get();
  }
  return resolved;
}

// One request image as [C, H, W] float32 in [0, 1] fitted to `spec`; errors name the image.
absl::StatusOr<torch::Tensor> DecodeImage(const v1::Image& image, int index,
                                          const core::ImageSpec& spec) {
  const std::string at = absl::StrCat("images[", index, "]");
  absl::StatusOr<torch::Tensor> pixels;
  switch (image.data_case()) {
    case v1::Image::kPng:
      pixels = core::DecodePng(image.png());
      break;
    case v1::Image::kRaw: {
      const v1::RawImage& raw = image.raw();
      std::vector<int64_t> shape(raw.shape().begin(), raw.shape().end());
      int64_t count = 1;
      for (int64_t d : shape) {
        if (d < 1 || d > 4096) {
          return absl::InvalidArgumentError(
              absl::StrCat(at, ".raw.shape has a dimension ", d, " outside [1, 4096]"));
        }
        count *= d;
      }
      if (shape.size() != 2 && shape.size() != 3) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, ".raw.shape must be [C, H, W] or [H, W]"));
      }
      size_t width = 0;
      at::ScalarType type;
      if (raw.dtype() == "uint8") {
        width = 1;
        type = at::kByte;
      } else if (raw.dtype() == "float32") {
        width = 4;
        type = at::kFloat;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(at, ".raw.dtype '", raw.dtype(), "' is not uint8 or float32"));
      }
      if (raw.data().size() != static_cast<size_t>(count) * width) {
        return absl::InvalidArgumentError(absl::StrCat(at, ".raw.data has ", raw.data().size(),
                                                       " bytes; shape and dtype need ",
                                                       static_cast<size_t>(count) * width));
      }
      torch::Tensor t = torch::empty(shape, type);
      std::memcpy(t.data_ptr(), raw.data().data(), raw.data().size());
      pixels = type == at::kByte ? t.to(torch::kFloat32).div_(255.0) : t;
      break;
    }
    case v1::Image::DATA_NOT_SET:
      return absl::InvalidArgumentError(absl::StrCat(at, " has neither png nor raw data"));
  }
  if (!pixels.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(at, ": ", pixels.status().message()));
  }
  absl::StatusOr<torch::Tensor> fitted = core::FitImage(*pixels, spec);
  if (!fitted.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(at, ": ", fitted.status().message()));
  }
  return fitted;
}

// The write side of a server-streamed call: the computation (on a worker) queues responses with
// Emit and ends with End; gRPC writes them one at a time and finishes after the last. Deletes
// itself in OnDone, which cannot come before End (Finish is only called after it).
template <typename Response>
class QueuedWriter final : public grpc::ServerWriteReactor<Response> {
 public:
  // False once the client has gone: the computation should stop.
  bool Emit(Response response) {
    {
      absl::MutexLock lock(&mu_);
      if (gone_) return false;
      queue_.push_back(std::move(response));
    }
    Pump();
    return true;
  }
  // Finishes with `status` once the queued responses are written (at once if the client has gone).
  // The computation must not touch the writer afterwards.
  void End(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      status_ = status;
      ended_ = true;
    }
    Pump();
  }
  const core::CancellationToken* cancel() const { return &cancel_; }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      queue_.pop_front();
      if (!ok) gone_ = true;
    }
    if (!ok) cancel_.Cancel();
    Pump();
  }
  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      gone_ = true;
    }
    cancel_.Cancel();
    Pump();
  }
  void OnDone() override { delete this; }

 private:
  // Starts the next write or finishes; gRPC operations are started outside the lock.
  void Pump() {
    const Response* next = nullptr;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || writing_) return;
      if (!gone_ && !queue_.empty()) {
        writing_ = true;
        next = &queue_.front();
      } else if (ended_) {
        finished_ = true;
        status = status_;
      } else {
        return;
      }
    }
    if (next != nullptr) {
      this->StartWrite(next);
    } else {
      this->Finish(status);  // may delete this (OnDone)
    }
  }

  core::CancellationToken cancel_;
  absl::Mutex mu_;
  std::deque<Response> queue_ ABSL_GUARDED_BY(mu_);  // front() is being written if writing_
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

InferenceServiceImpl::InferenceServiceImpl(ModelManager* models, Metrics* metrics, int workers,
                                           Authorizer* auth)
    : models_(models), metrics_(metrics), auth_(auth) {
  for (int i = 0; i < std::max(workers, 1); ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

InferenceServiceImpl::~InferenceServiceImpl() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : workers_) t.join();
}

void InferenceServiceImpl::Post(std::function<void()> work) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(work));
}

void InferenceServiceImpl::WorkerLoop() {
  while (true) {
    std::function<void()> work;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || stopping_; };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping and drained
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

// Every inference call needs the query (or admin) role on its model; refusals end the call before
// any work is queued.
grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceServiceImpl::Generate(
    grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) {
  auto* writer = new QueuedWriter<v1::GenerateResponse>();
  AuthorizedCall call(auth_, *ctx, "InferenceService/Generate");
  call.set_model(request->model_id());
  if (grpc::Status denied = call.Check(kRoleQuery | kRoleAdmin, request->model_id());
      !denied.ok()) {
    call.Audit(denied);
    writer->End(denied);
    return writer;
  }
  Post([this, request, writer, call]() mutable {
    const absl::Status status = DoGenerate(
        *request, [writer](v1::GenerateResponse r) { return writer->Emit(std::move(r)); });
    call.Audit(ToGrpc(status));
    writer->End(ToGrpc(status));
  });
  return writer;
}

grpc::ServerWriteReactor<v1::SampleResponse>* InferenceServiceImpl::Sample(
    grpc::CallbackServerContext* ctx, const v1::SampleRequest* request) {
  auto* writer = new QueuedWriter<v1::SampleResponse>();
  AuthorizedCall call(auth_, *ctx, "InferenceService/Sample");
  call.set_model(request->model_id());
  if (grpc::Status denied = call.Check(kRoleQuery | kRoleAdmin, request->model_id());
      !denied.ok()) {
    call.Audit(denied);
    writer->End(denied);
    return writer;
  }
  Post([this, request, writer, call]() mutable {
    const absl::Status status =
        DoSample(*request, writer->cancel(),
                 [writer](v1::SampleResponse r) { return writer->Emit(std::move(r)); });
    call.Audit(ToGrpc(status));
    writer->End(ToGrpc(status));
  });
  return writer;
}

grpc::ServerUnaryReactor* InferenceServiceImpl::Score(grpc::CallbackServerContext* ctx,
                                                      const v1::ScoreRequest* request,
                                                      v1::ScoreResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  AuthorizedCall call(auth_, *ctx, "InferenceService/Score");
  call.set_model(request->model_id());
  if (grpc::Status denied = call.Check(kRoleQuery | kRoleAdmin, request->model_id());
      !denied.ok()) {
    return call.Finish(reactor, denied);
  }
  Post([this, reactor, request, response, call]() mutable {
    call.Finish(reactor, ToGrpc(DoScore(*request, response)));
  });
  return reactor;
}

grpc::ServerUnaryReactor* InferenceServiceImpl::Classify(grpc::CallbackServerContext* ctx,
                                                         const v1::ClassifyRequest* request,
                                                         v1::ClassifyResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  AuthorizedCall call(auth_, *ctx, "InferenceService/Classify");
  call.set_model(request->model_id());
  if (grpc::Status denied = call.Check(kRoleQuery | kRoleAdmin, request->model_id());
      !denied.ok()) {
    return call.Finish(reactor, denied);
  }
  Post([this, reactor, request, response, call]() mutable {
    call.Finish(reactor, ToGrpc(DoClassify(*request, response)));
  });
  return reactor;
}

absl::Status InferenceServiceImpl::DoClassify(const v1::ClassifyRequest& req,
                                              v1::ClassifyResponse* response) {
  const v1::ClassifyRequest* request = &req;
  const auto start = Clock::now();
  auto finish = [&](const absl::Status& status) {
    metrics_->RecordInference(request->model_id(), "Classify", status.code(),
                              std::chrono::duration<double>(Clock::now() - start).count());
    return status;
  };
  if (request->model_id().empty()) {
    return finish(absl::InvalidArgumentError("model_id is required"));
  }
  auto served = models_->Resolve(request->model_id(), request->version());
  if (!served.ok()) return finish(served.status());
  const core::ImageClassifier* classifier = (*served)->model->AsImageClassifier();
  if (classifier == nullptr) {
    return finish(absl::FailedPreconditionError(absl::StrCat(
        "model '", request->model_id(), "' is not an image classifier: Classify needs one")));
  }
  if (request->images_size() == 0) {
    return finish(absl::InvalidArgumentError("images is empty: send at least one image"));
  }
  if (request->images_size() > kMaxClassifyImages) {
    return finish(absl::ResourceExhaustedError(
        absl::StrCat(request->images_size(), " images in one call; the limit is ",
                     kMaxClassifyImages, ": split the batch")));
  }
  const int64_t top_k =
      request->top_k() > 0 ? request->top_k() : std::min<int64_t>(5, classifier->num_classes());
  std::vector<torch::Tensor> images;
  for (int i = 0; i < request->images_size(); ++i) {
    auto image = DecodeImage(request->images(i), i, classifier->image_spec());
    if (!image.ok()) return finish(image.status());
    images.push_back(*std::move(image));
  }
  auto results = core::ClassifyImages(*classifier, torch::stack(images), top_k);
  if (!results.ok()) return finish(results.status());
  for (const auto& predictions : *results) {
    v1::Classification* c = response->add_results();
    for (const core::ClassPrediction& p : predictions) {
      v1::ClassPrediction* out = c->add_top();
      out->set_class_id(p.class_id);
      out->set_label(p.label);
      out->set_probability(p.probability);
    }
  }
  response->set_version((*served)->version);
  return finish(absl::OkStatus());
}

absl::Status InferenceServiceImpl::DoSample(const v1::SampleRequest& req,
                                            const core::CancellationToken* cancel,
                                            const Emit<v1::SampleResponse>& emit) {
  const v1::SampleRequest* request = &req;
  const auto start = Clock::now();
  auto finish = [&](const absl::Status& status) {
    metrics_->RecordInference(request->model_id(), "Sample", status.code(),
                              std::chrono::duration<double>(Clock::now() - start).count());
    return status;
  };
  if (request->model_id().empty()) {
    return finish(absl::InvalidArgumentError("model_id is required"));
  }
  auto served = models_->Resolve(request->model_id(), request->version());
  if (!served.ok()) return finish(served.status());
  const core::ImageSampler* sampler = (*served)->model->AsImageSampler();
  if (sampler == nullptr) {
    return finish(absl::FailedPreconditionError(
        absl::StrCat("model '", request->model_id(),
                     "' is not a class-conditional generator: Sample needs one")));
  }
  if (request->labels_size() == 0) {
    return finish(absl::InvalidArgumentError("labels is empty: send one class label per image"));
  }
  if (request->labels_size() > kMaxSampleImages) {
    return finish(absl::ResourceExhaustedError(absl::StrCat(
        request->labels_size(), " images in one call; the limit is ", kMaxSampleImages)));
  }
  for (int i = 0; i < request->labels_size(); ++i) {
    const int64_t label = request->labels(i);
    if (label < 0 || label >= sampler->num_classes()) {
      return finish(absl::InvalidArgumentError(absl::StrCat("labels[", i, "] = ", label,
                                                            " is not a class of the model (0..",
                                                            sampler->num_classes() - 1, ")")));
    }
  }
  core::SampleOptions options;
  options.steps =
      request->steps() == 0 ? std::min<int64_t>(50, sampler->max_steps()) : request->steps();
  if (sampler->max_steps() == 1 && options.steps != 1) {
    return finish(absl::InvalidArgumentError(absl::StrCat(
        "model '", request->model_id(), "' version ", (*served)->version,
        " is a one-step generator: it samples in one network evaluation; omit steps or send 1, "
        "got ",
        request->steps())));
  }
  if (options.steps < 1 || options.steps > sampler->max_steps()) {
    return finish(absl::InvalidArgumentError(
        absl::StrCat("steps must be in [1, ", sampler->max_steps(), "], got ", request->steps())));
  }
  options.sampler = request->sampler().empty() ? "ddim" : request->sampler();
  if (options.sampler != "ddim" && options.sampler != "ancestral") {
    return finish(absl::InvalidArgumentError(
        absl::StrCat("sampler must be ddim or ancestral, got '", request->sampler(), "'")));
  }
  options.guidance_scale = request->has_guidance_scale() ? request->guidance_scale() : 3.0;
  if (!(options.guidance_scale >= 0.0 && options.guidance_scale <= 20.0)) {
    return finish(absl::InvalidArgumentError(
        absl::StrCat("guidance_scale must be in [0, 20], got ", options.guidance_scale)));
  }
  options.seed = request->seed();
  const std::string format = request->format().empty() ? "png" : request->format();
  if (format != "png" && format != "raw") {
    return finish(absl::InvalidArgumentError(
        absl::StrCat("format must be png or raw, got '", request->format(), "'")));
  }
  // `cancel` fires when the client goes away: it stops the sampling loop.
  std::vector<int64_t> labels(request->labels().begin(), request->labels().end());
  absl::StatusOr<torch::Tensor> images;
  absl::Status status = core::TorchCall("sampling", [&]() -> absl::Status {
    images = sampler->Sample(torch::tensor(labels, torch::kLong), options, cancel);
    return images.status();
  });
  if (!status.ok()) return finish(status);
  const torch::Tensor cpu = images->to(torch::kFloat32).cpu().contiguous();
  for (int i = 0; i < request->labels_size(); ++i) {
    if (cancel->cancelled()) return finish(absl::CancelledError("the client went away"));
    v1::SampleResponse response;
    response.set_index(i);
    response.set_label(labels[static_cast<size_t>(i)]);
    response.set_version((*served)->version);
    const torch::Tensor image = cpu[i].contiguous();
    if (format == "png") {
      absl::StatusOr<std::string> png = core::EncodePng(image);
      if (!png.ok()) return finish(png.status());
      response.mutable_image()->set_png(*std::move(png));
    } else {
      v1::RawImage* raw = response.mutable_image()->mutable_raw();
      for (int64_t d : image.sizes()) raw->add_shape(d);
      raw->set_dtype("float32");
      raw->set_data(std::string(reinterpret_cast<const char*>(image.data_ptr<float>()),
                                static_cast<size_t>(image.numel()) * sizeof(float)));
    }
    if (!emit(std::move(response))) return finish(absl::CancelledError("the client went away"));
  }
  return finish(absl::OkStatus());
}

absl::Status InferenceServiceImpl::DoGenerate(const v1::GenerateRequest& req,
                                              const Emit<v1::GenerateResponse>& emit) {
  const v1::GenerateRequest* request = &req;
  const auto start = Clock::now();
  auto finish = [&](const absl::Status& status) {
    metrics_->RecordInference(request->model_id(), "Generate", status.code(),
                              std::chrono::duration<double>(Clock::now() - start).count());
    return status;
  };
  auto resolved =
      ResolveLm(models_, request->model_id(), request->version(),
                request->has_logit_difference() ? &request->logit_difference() : nullptr);
  if (!resolved.ok()) return finish(resolved.status());
  const int64_t served_version = resolved->version->version;

  core::TextPrompt prompt{request->prompt(), request->qa_format()};
  core::GenerateOptions options;
  options.max_new_tokens = request->max_tokens() == 0 ? 64 : request->max_tokens();
  options.temperature = request->temperature();
  options.top_p = request->has_top_p() ? request->top_p() : 1.0;
  options.seed = request->seed();
  auto to_proto = [&](const core::TextChunk& chunk) {
    v1::GenerateResponse out;
    out.set_text(chunk.text);
    for (int64_t t : chunk.token_ids) out.add_token_ids(t);
    out.set_version(served_version);
    return out;
  };
  bool client_gone = false;
  auto on_chunk = [&](const core::TextChunk& chunk) {
    if (!emit(to_proto(chunk))) {
      client_gone = true;
      return false;
    }
    return true;
  };
  auto generated = core::Generate(*resolved->lm, prompt, options, on_chunk);
  if (!generated.ok()) return finish(generated.status());
  if (client_gone) return finish(absl::CancelledError("the client went away"));
  v1::GenerateResponse last = to_proto(generated->tail);
  last.set_finish_reason(core::FinishReasonName(generated->finish_reason));
  emit(std::move(last));
  metrics_->AddGeneratedTokens(request->model_id(),
                               static_cast<int64_t>(generated->token_ids.size()));
  return finish(absl::OkStatus());
}

absl::Status InferenceServiceImpl::DoScore(const v1::ScoreRequest& req,
                                           v1::ScoreResponse* response) {
  const v1::ScoreRequest* request = &req;
  const auto start = Clock::now();
  auto finish = [&](const absl::Status& status) {
    metrics_->RecordInference(request->model_id(), "Score", status.code(),
                              std::chrono::duration<double>(Clock::now() - start).count());
    return status;
  };
  auto resolved =
      ResolveLm(models_, request->model_id(), request->version(),
                request->has_logit_difference() ? &request->logit_difference() : nullptr);
  if (!resolved.ok()) return finish(resolved.status());
  auto scores =
      core::Score(*resolved->lm, core::TextPrompt{request->prompt(), request->qa_format()},
                  {request->continuation()});
  if (!scores.ok()) return finish(scores.status());
  const core::ContinuationScore& score = scores->front();
  for (double lp : score.token_log_probs) response->add_token_log_probabilities(lp);
  response->set_log_probability(score.log_probability);
  response->set_num_tokens(static_cast<int32_t>(score.num_tokens));
  response->set_mean_token_probability(score.mean_token_probability);
  response->set_version(resolved->version->version);
  return finish(absl::OkStatus());
}

}  // namespace unlearning::server
