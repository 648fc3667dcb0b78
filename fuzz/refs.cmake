# fuzz_refs: basewatch refs' judging and JSON report on any Dockerfile, with
# registry answers made up from the input (every use must get what judging
# it alone gives; render_json must be json::dump(2) to the byte). Same seeds
# as fuzz_dockerfile.
bw_add_fuzzer(fuzz_refs ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_refs.cpp bw_refs bw_config nlohmann_json::nlohmann_json)
target_compile_options(bw_refs PRIVATE -fsanitize=fuzzer-no-link)
