// Trigger types: one interface, one implementation per type. Adding a type
// means one file here (its class), a line in make_trigger (trigger.cpp), and
// its keys in config/ (the key table and the required keys).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "db/store.h"
#include "net/http.h"

namespace bw::triggers {

class ProcessRunner;

struct Outcome {
  bool delivered = false;
  int status = 0;           // HTTP status or exit code; 0 when there was no answer
  std::string error;        // why it failed, for status and logs
  std::string output_tail;  // command and build triggers: the end of the output
  std::string pushed_digest;  // build triggers: the digest of the image they pushed
  bool retryable = true;    // false: retrying cannot help (e.g. 400 with a bad payload)
};

class Trigger {
 public:
  virtual ~Trigger() = default;
  // Sends one delivery. Must not throw; everything becomes an Outcome.
  virtual Outcome deliver(const db::Delivery& delivery) = 0;
  // The config `type`, for metrics and logs.
  virtual const char* type() const = 0;
  // A build that basewatch runs itself: the dispatcher runs these outside its
  // send loop, under the global build limit, so a long build never holds up
  // webhooks.
  virtual bool is_build() const { return false; }
};

// A trigger that runs programs itself on the process seam (the helpers it
// shares are in task.h), one log per attempt: the dispatcher runs it as a
// build (under builds.concurrency, on its own thread).
class TaskTrigger : public Trigger {
 public:
  bool is_build() const override { return true; }
  // The log file of attempt `attempt` (1-based) of a delivery.
  std::string log_path(const std::string& delivery_id, int attempt) const;

 protected:
  TaskTrigger(config::TriggerConfig cfg, ProcessRunner& runner, std::string log_dir)
      : m_cfg(std::move(cfg)), m_runner(runner), m_log_dir(std::move(log_dir)) {}
  // Creates the log folder; the Outcome of a failure to, else nullopt.
  std::optional<Outcome> prepare_log_folder() const;

  config::TriggerConfig m_cfg;
  ProcessRunner& m_runner;
  std::string m_log_dir;
};

// Shared HTTP handling of the CI triggers: a 2xx is delivered; no answer,
// 408, 429 and 5xx are retried; any other 4xx is not (the request or the
// credentials are wrong, and the same bytes will be refused again).
Outcome http_outcome(const Result<net::Response>& res);
bool retryable_status(int status);

std::string user_agent();

// What the CI and command triggers pass on from a delivery body.
struct PayloadSummary {
  std::string project;                    // "" for watch: entries
  std::string dockerfile;                 // the project's Dockerfile, or ""
  std::vector<std::string> changed_refs;  // changes[].ref, in order
};
// ErrorKind::invalid when the stored body is not the JSON of a delivery.
Result<PayloadSummary> summarize(const db::Delivery& delivery);
// A non-retryable Outcome for a delivery that cannot be sent as stored.
Outcome refused(const Error& error);
// A retryable Outcome for what went wrong this time.
Outcome failed(const Error& error);

// What a build trigger builds for a project: its config as the running
// model has it (a `dockerfiles:` glob's projects included).
struct BuildProject {
  std::string name;
  std::string dockerfile;
  std::string context;  // the build context folder
  std::map<std::string, std::string> build_args;
  std::string target;                  // "" is the last stage
  std::vector<std::string> platforms;  // at least one
  std::string image;                   // the normalised tag ref it pushes to; "" for none
};

// What the trigger types need from the outside. Not every type uses every
// seam; a type whose seam is missing is not built.
struct Seams {
  net::HttpClient* http = nullptr;
  ProcessRunner* runner = nullptr;
  std::string build_logs;  // folder for command and build triggers' logs
  // project name -> build context folder (command triggers' default workdir)
  std::map<std::string, std::string> project_contexts;
  // Build triggers: the project a delivery names (nullopt when it is not
  // configured), asked at each attempt so reloads and rescans count.
  std::function<std::optional<BuildProject>(const std::string& project)> build_project;
  // Build triggers: basewatch's `registries:` (credentials for the auth
  // file, plain HTTP, extra CAs), the clock that dates the images, and what
  // to do once an image is pushed (check it now: the chain goes on).
  std::map<std::string, config::RegistryConfig> registries;
  const ClockSource* clock = nullptr;
  std::function<void(const std::string& image)> on_pushed;
};

// The trigger for a config entry; nullptr for a type not built here.
std::unique_ptr<Trigger> make_trigger(const config::TriggerConfig& cfg, const Seams& seams);

}  // namespace bw::triggers

// The built-in types, for callers that construct one directly.
#include "triggers/build.h"
#include "triggers/command.h"
#include "triggers/github.h"
#include "triggers/gitlab.h"
#include "triggers/webhook.h"
