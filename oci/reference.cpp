#include "oci/reference.h"

#include <cstdio>
#include <string>

namespace bw::oci {
namespace {

constexpr std::string_view k_docker_hub = "docker.io";
constexpr std::string_view k_docker_hub_legacy = "index.docker.io";
constexpr std::string_view k_docker_hub_api = "registry-1.docker.io";
constexpr size_t k_max_name_length = 255;
constexpr size_t k_max_tag_length = 128;

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }
bool is_hex_lower(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool is_hex(char c) { return is_hex_lower(c) || (c >= 'A' && c <= 'F'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// 'x' for printable ASCII, else "byte 0x0a", so messages stay one readable line.
std::string describe_char(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
  char buf[16];
  std::snprintf(buf, sizeof buf, "byte 0x%02x", u);
  return buf;
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// Why a digest is invalid, or empty when it is valid.
std::string digest_problem(std::string_view digest) {
  if (digest.empty()) return "digest is empty";
  auto colon = digest.find(':');
  if (colon == std::string_view::npos) return "digest " + quoted(digest) + " must be algorithm:hex";
  auto algorithm = digest.substr(0, colon);
  auto hex = digest.substr(colon + 1);
  size_t want = 0;
  if (algorithm == "sha256") {
    want = 64;
  } else if (algorithm == "sha512") {
    want = 128;
  } else {
    return "unsupported digest algorithm " + quoted(algorithm) + " (sha256 or sha512)";
  }
  for (char c : hex) {
    if (!is_hex_lower(c)) {
      return std::string(algorithm) + " digest must be lowercase hex, found " + describe_char(c);
    }
  }
  if (hex.size() != want) {
    return std::string(algorithm) + " digest must have " + std::to_string(want) + " hex characters, found " +
           std::to_string(hex.size());
  }
  return {};
}

// Why a registry ("host[:port]", "[v6]:port") is invalid, or empty.
std::string domain_problem(std::string_view domain) {
  std::string_view host = domain;
  std::string_view port;
  bool has_port = false;
  if (!domain.empty() && domain.front() == '[') {
    auto close = domain.find(']');
    if (close == std::string_view::npos) return "registry " + quoted(domain) + " has an unclosed '['";
    host = domain.substr(0, close + 1);
    auto inner = domain.substr(1, close - 1);
    bool ok = !inner.empty() && inner.find(':') != std::string_view::npos;
    for (char c : inner) ok = ok && (is_hex(c) || c == ':');
    if (!ok) return "invalid IPv6 address " + quoted(host) + " in registry";
    auto rest = domain.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return "registry " + quoted(domain) + " has text after ']' that is not a port";
      has_port = true;
      port = rest.substr(1);
    }
  } else {
    auto colon = domain.find(':');
    if (colon != std::string_view::npos) {
      host = domain.substr(0, colon);
      port = domain.substr(colon + 1);
      has_port = true;
    }
    if (host.empty()) return "registry host is empty";
    // domain-name: labels of [A-Za-z0-9-], not starting or ending with '-', joined by '.'.
    size_t start = 0;
    while (true) {
      auto dot = host.find('.', start);
      auto label = host.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
      if (label.empty()) return "registry host " + quoted(host) + " has an empty label";
      for (char c : label) {
        if (!is_alnum(c) && c != '-') {
          return "registry host " + quoted(host) + " contains invalid character " + describe_char(c);
        }
      }
      if (label.front() == '-' || label.back() == '-') {
        return "registry host " + quoted(host) + " has a label that starts or ends with '-'";
      }
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
  }
  if (has_port) {
    if (port.empty()) return "registry " + quoted(domain) + " has an empty port";
    unsigned long value = 0;
    for (char c : port) {
      if (!is_digit(c)) return "registry port " + quoted(port) + " must be a number";
      if (value <= 65535) value = value * 10 + static_cast<unsigned long>(c - '0');
    }
    if (value < 1 || value > 65535) return "registry port " + std::string(port) + " is out of range (1-65535)";
  }
  return {};
}

// Why one path component is invalid, or empty. Grammar:
// [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
std::string component_problem(std::string_view comp) {
  if (comp.empty()) return "repository path has an empty component";
  for (char c : comp) {
    if (!is_lower_alnum(c) && c != '.' && c != '_' && c != '-') {
      return "path component " + quoted(comp) + " contains invalid character " + describe_char(c);
    }
  }
  if (!is_lower_alnum(comp.front())) {
    return "path component " + quoted(comp) + " must start with a lowercase letter or digit";
  }
  if (!is_lower_alnum(comp.back())) {
    return "path component " + quoted(comp) + " must end with a lowercase letter or digit";
  }
  size_t i = 0;
  while (i < comp.size()) {
    if (is_lower_alnum(comp[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < comp.size() && !is_lower_alnum(comp[j])) ++j;
    auto sep = comp.substr(i, j - i);
    bool ok = sep == "." || sep == "_" || sep == "__" || sep.find_first_not_of('-') == std::string_view::npos;
    if (!ok) return "path component " + quoted(comp) + " has invalid separator " + quoted(sep);
    i = j;
  }
  return {};
}

std::string tag_problem(std::string_view tag) {
  if (tag.empty()) return "tag is empty";
  for (char c : tag) {
    if (!is_alnum(c) && c != '_' && c != '.' && c != '-') {
      return "tag " + quoted(tag) + " contains invalid character " + describe_char(c);
    }
  }
  if (tag.front() == '.' || tag.front() == '-') {
    return "tag " + quoted(tag) + " must start with a letter, digit or '_'";
  }
  if (tag.size() > k_max_tag_length) {
    return "tag is " + std::to_string(tag.size()) + " characters long (at most 128)";
  }
  return {};
}

// docker's reference library (splitDockerDomain): the first component is a
// registry host when it holds '.' or ':', is "localhost", or holds an
// uppercase letter (repository paths are lowercase, so "Foo/bar" can only be
// host Foo, path bar).
bool is_domain(std::string_view first_component) {
  if (first_component == "localhost" || first_component.find_first_of(".:") != std::string_view::npos) return true;
  for (char c : first_component) {
    if (c >= 'A' && c <= 'Z') return true;
  }
  return false;
}

bool is_all_hex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!is_hex_lower(c)) return false;
  return true;
}

}  // namespace

std::string Reference::name() const { return registry + "/" + repository; }

std::string Reference::tag_ref() const {
  if (tag.empty()) return str();
  return name() + ":" + tag;
}

std::string Reference::str() const {
  std::string out = name();
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

Result<Reference> parse_reference(std::string_view text) {
  auto fail = [&](const std::string& cause) {
    return make_error(ErrorKind::invalid, "invalid reference " + quoted(text) + ": " + cause);
  };
  if (text.empty()) return fail("reference is empty");
  if (is_all_hex64(text)) return fail("a 64-character hex string is an image ID, not a repository name");

  Reference ref;
  std::string_view rest = text;
  std::string_view digest;
  bool has_digest = false;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    digest = rest.substr(at + 1);
    rest = rest.substr(0, at);
    has_digest = true;
  }

  std::string_view domain;
  if (auto slash = rest.find('/'); slash != std::string_view::npos && is_domain(rest.substr(0, slash))) {
    domain = rest.substr(0, slash);
    rest = rest.substr(slash + 1);
    if (auto problem = domain_problem(domain); !problem.empty()) return fail(problem);
  }

  // The path has no ':', so the first one starts the tag.
  std::string_view path = rest;
  std::string_view tag;
  bool has_tag = false;
  if (auto colon = rest.find(':'); colon != std::string_view::npos) {
    path = rest.substr(0, colon);
    tag = rest.substr(colon + 1);
    has_tag = true;
  }

  if (path.empty()) return fail("repository name is empty");
  for (char c : path) {
    if (c >= 'A' && c <= 'Z') return fail("repository name must be lowercase");
  }
  size_t start = 0;
  while (true) {
    auto slash = path.find('/', start);
    auto comp = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (auto problem = component_problem(comp); !problem.empty()) return fail(problem);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (has_tag) {
    if (auto problem = tag_problem(tag); !problem.empty()) return fail(problem);
  }
  if (has_digest) {
    if (auto problem = digest_problem(digest); !problem.empty()) return fail(problem);
  }

  // Normalise. Host names are case-insensitive, so the registry is lowercased
  // to make "GHCR.io/x" and "ghcr.io/x" the same watch.
  // A host known as one only by its uppercase letters ("Foo/bar") keeps them:
  // lowercased it would read as a Docker Hub path, and str() must parse back
  // to the same reference.
  std::string registry;
  for (char c : domain) registry += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  if (!registry.empty() && registry != "localhost" && registry.find_first_of(".:") == std::string::npos) {
    registry = std::string(domain);
  }
  if (registry.empty() || registry == k_docker_hub_legacy) registry = k_docker_hub;
  ref.registry = std::move(registry);
  ref.repository = std::string(path);
  if (ref.registry == k_docker_hub && path.find('/') == std::string_view::npos) {
    ref.repository = "library/" + ref.repository;
  }
  if (ref.name().size() > k_max_name_length) {
    return fail("name is " + std::to_string(ref.name().size()) + " characters long (at most 255)");
  }
  ref.tag = std::string(tag);
  ref.digest = std::string(digest);
  if (!has_tag && !has_digest) ref.tag = "latest";
  return ref;
}

std::string api_host(std::string_view registry) {
  if (registry == k_docker_hub || registry == k_docker_hub_legacy) return std::string(k_docker_hub_api);
  return std::string(registry);
}

bool is_valid_digest(std::string_view digest) { return digest_problem(digest).empty(); }

}  // namespace bw::oci
