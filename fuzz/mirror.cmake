# fuzz_mirror: the descriptor graph that drives a copy (mirror/manifest:
# parse_manifest, filter_index, plan_copy). Seeds in fuzz/corpus/mirror/.
bw_add_fuzzer(fuzz_mirror ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_mirror.cpp bw_mirror)
