# fuzz_oci: the pure OCI parsers (references, platforms, indexes, challenges,
# rate-limit headers, error bodies). Seeds in fuzz/corpus/oci/.
bw_add_fuzzer(fuzz_oci ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_oci.cpp bw_oci)
