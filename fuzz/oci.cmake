# fuzz_oci: the pure OCI parsers (references, platforms, indexes, challenges,
# rate-limit headers, error bodies). Seeds in fuzz/corpus/oci/.
bw_add_fuzzer(fuzz_oci ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_oci.cpp bw_oci)
# bw_add_fuzzer instruments only the harness; the code under test needs
# coverage instrumentation too, or libFuzzer gets no feedback from it. This
# file is included only when BASEWATCH_FUZZ is on.
target_compile_options(bw_oci PRIVATE -fsanitize=fuzzer-no-link)
