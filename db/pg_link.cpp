#include "db/pg_link.h"

#include <set>

#include "util/database_uri.h"

namespace bw::db::pg {

std::string one_line(const char* text) {
  std::string out;
  bool space = false;
  for (const char* p = text ? text : ""; *p; ++p) {
    if (*p == '\n' || *p == '\t' || *p == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += *p;
  }
  return out;
}

Result<PGconn*> connect(const std::string& uri, const std::vector<std::string>& secrets, const Defaults& extra) {
  const std::string shown = "database " + redact_database(uri) + ": ";

  // libpq reads the URI; a URI it cannot read is the user's to fix.
  char* parse_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(uri.c_str(), &parse_error);
  if (!options) {
    std::string why = parse_error ? one_line(parse_error) : "out of memory";
    if (parse_error) PQfreemem(parse_error);
    return make_error(ErrorKind::invalid, shown + redact_secrets(why, secrets));
  }
  std::set<std::string> given;
  for (auto* o = options; o->keyword; ++o) {
    if (o->val && *o->val) given.insert(o->keyword);
  }
  PQconninfoFree(options);
  // The URI first (expanded), then what it may not say: a name for
  // pg_stat_activity, and a bounded wait for an unreachable server.
  Defaults added{{"connect_timeout", "10"}};
  added.insert(added.end(), extra.begin(), extra.end());
  std::vector<const char*> keys{"dbname", "fallback_application_name", "client_encoding"};
  std::vector<const char*> values{uri.c_str(), "basewatch", "UTF8"};
  for (const auto& [key, value] : added) {
    if (given.count(key)) continue;
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);

  PGconn* conn = PQconnectdbParams(keys.data(), values.data(), 1);
  if (!conn) return make_error(ErrorKind::io, shown + "out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = redact_secrets(one_line(PQerrorMessage(conn)), secrets);
    if (PQconnectionNeedsPassword(conn)) {
      why += " (no password found: name a passfile in the URI, ?passfile=PATH, or set PGPASSFILE)";
    }
    PQfinish(conn);
    // The server is up and accepting connections but refused this one
    // (password, role, database, pg_hba), or libpq refused a parameter
    // before contacting any server: the user's to fix. Else the server could
    // not be reached (or does not accept connections yet: starting up,
    // shutting down): operational, try again later. (libpq's messages are
    // not translated: basewatch runs in the C locale.)
    bool contacted = why.find("connection to server") != std::string::npos ||
                     why.find("could not translate host name") != std::string::npos;
    switch (PQpingParams(keys.data(), values.data(), 1)) {
      case PQPING_OK:
      case PQPING_NO_ATTEMPT: return make_error(ErrorKind::invalid, shown + why);
      case PQPING_REJECT:
      case PQPING_NO_RESPONSE: break;
    }
    return make_error(contacted ? ErrorKind::network : ErrorKind::invalid, shown + why);
  }
  // The server's notices (NOTICE: relation ... already exists) are not ours
  // to print on stderr.
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  return conn;
}

}  // namespace bw::db::pg
