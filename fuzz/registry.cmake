# fuzz_budgets: registry budgets as the cluster's leader stores them
# (registry/client.h decode_budgets, text from the database). Seeds in
# fuzz/corpus/budgets/.
bw_add_fuzzer(fuzz_budgets ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_budgets.cpp bw_registry bw_util)
