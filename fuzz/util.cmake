# fuzz_database_uri: `database:` values (util/database_uri: redaction,
# passwords, parameter rewriting). Seeds in fuzz/corpus/database_uri/.
bw_add_fuzzer(fuzz_database_uri ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_database_uri.cpp bw_util)
