#include "db/copy.h"

namespace bw::db {

namespace {

constexpr size_t k_batch = 500;

std::string describe_counts(const std::map<std::string, int64_t>& counts) {
  std::string out;
  for (const char* table : k_tables) {
    auto it = counts.find(table);
    if (it == counts.end() || it->second == 0) continue;
    if (!out.empty()) out += ", ";
    out += std::string(table) + ": " + std::to_string(it->second);
  }
  return out;
}

}  // namespace

Result<std::map<std::string, int64_t>> copy_store(Store& from, Store& to) {
  BW_TRY(auto held, to.row_counts());
  std::string holds = describe_counts(held);
  if (!holds.empty()) {
    return make_error(ErrorKind::invalid, "the destination is not empty (" + holds + "); db copy only writes into an empty database");
  }
  std::map<std::string, int64_t> copied;
  auto st = from.transaction([&]() -> Status {
    BW_TRY(auto expected, from.row_counts());
    return to.transaction([&]() -> Status {
      for (const char* table : k_tables) {
        copied[table] = 0;
        BW_TRY(auto done, from.read_rows(table, k_batch, [&](const TableRows& rows) -> Status {
          copied[table] += static_cast<int64_t>(rows.rows.size());
          return to.write_rows(table, rows);
        }));
        (void)done;
      }
      BW_TRY(auto finished, to.finish_copy());
      (void)finished;
      // What arrived is what there was.
      BW_TRY(auto now_held, to.row_counts());
      if (now_held != expected || copied != expected) {
        return make_error(ErrorKind::internal, "the copy holds " + describe_counts(now_held) + ", the source " + describe_counts(expected));
      }
      return ok_status();
    });
  });
  if (!st) return st.error();
  return copied;
}

}  // namespace bw::db
