# fuzz_inbound: the inbound registry hook parsers and their authentication
# (api/inbound.h). Seeds in fuzz/corpus/inbound/ (first byte: the format,
# '0' distribution .. '6' generic).
bw_add_fuzzer(fuzz_inbound ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_inbound.cpp bw_inbound)
