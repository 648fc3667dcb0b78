# fuzz_dockerfile: the Dockerfile parser (scan with fixed and input-derived
# options, shell-word expansion, the project graph). Seeds in
# fuzz/corpus/dockerfile/.
bw_add_fuzzer(fuzz_dockerfile ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_dockerfile.cpp bw_dockerfile)
# Coverage feedback needs the code under test instrumented, not only the harness.
target_compile_options(bw_dockerfile PRIVATE -fsanitize=fuzzer-no-link)
# fuzz_rewrite: refs fix's byte-exact rewrites (scan, rewrite, scan again,
# compare). Same seeds as fuzz_dockerfile.
bw_add_fuzzer(fuzz_rewrite ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_rewrite.cpp bw_dockerfile)
