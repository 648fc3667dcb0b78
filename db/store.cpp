#include "db/store.h"

#include "db/pg_store.h"
#include "db/sqlite_store.h"
#include "util/database_uri.h"

namespace bw::db {

const char* to_string(DeliveryState s) {
  switch (s) {
    case DeliveryState::pending: return "pending";
    case DeliveryState::delivered: return "delivered";
    case DeliveryState::failed: return "failed";
    case DeliveryState::dead: return "dead";
  }
  return "pending";
}

std::optional<DeliveryState> parse_delivery_state(const std::string& s) {
  if (s == "pending") return DeliveryState::pending;
  if (s == "delivered") return DeliveryState::delivered;
  if (s == "failed") return DeliveryState::failed;
  if (s == "dead") return DeliveryState::dead;
  return std::nullopt;
}

std::string newer_schema_message(int version) {
  return "database: schema version " + std::to_string(version) + " is newer than this basewatch understands (" +
         std::to_string(k_schema_version) + "); use a newer basewatch or another database";
}

Result<std::unique_ptr<Store>> Store::open(const std::string& database) {
  if (is_postgres_uri(database)) {
    BW_TRY(auto pg, PgStore::open(database));
    return std::unique_ptr<Store>(std::move(pg));
  }
  BW_TRY(auto sqlite, SqliteStore::open(database));
  return std::unique_ptr<Store>(std::move(sqlite));
}

}  // namespace bw::db
