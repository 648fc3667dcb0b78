# fuzz_dockerfile: the Dockerfile parser (scan with fixed and input-derived
# options, shell-word expansion, the project graph). Seeds in
# fuzz/corpus/dockerfile/.
bw_add_fuzzer(fuzz_dockerfile ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_dockerfile.cpp bw_dockerfile)
# Coverage feedback needs the code under test instrumented, not only the harness.
target_compile_options(bw_dockerfile PRIVATE -fsanitize=fuzzer-no-link)
# fuzz_rewrite: refs fix's byte-exact rewrites (scan, rewrite, scan again,
# compare). Same seeds as fuzz_dockerfile.
bw_add_fuzzer(fuzz_rewrite ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_rewrite.cpp bw_dockerfile)

# fuzz_pin: pinned copies of Dockerfiles for task builds (dockerfile/pin.h):
# every image of the input pinned, the copy scanned again and compared line
# by line. Seeds in fuzz/corpus/pin/; run it on both folders:
#   ./build-fuzz/fuzz/fuzz_pin -max_total_time=900 -dict=fuzz/dockerfile.dict NEW_DIR fuzz/corpus/pin fuzz/corpus/dockerfile
bw_add_fuzzer(fuzz_pin ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_pin.cpp bw_dockerfile)
