# fuzz_config: the config file (YAML -> typed config, every error path) and a
# docker config.json's credentials (registry/credentials). Seeds in fuzz/corpus/config/.
bw_add_fuzzer(fuzz_config ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_config.cpp bw_config bw_registry)
