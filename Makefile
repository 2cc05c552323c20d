# Makefile: the front door. `make run` and `make test` work on a fresh Debian 12 machine:
# both install what is missing (ops/install-deps.sh), configure and build with CMake first.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CONFIG ?=
FUZZ_SECONDS ?= 60
VALGRIND ?= valgrind --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite --quiet

.PHONY: all deps configure build run test bench asan fuzz valgrind format clean

all: build

deps:
	@sh ops/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

configure: $(BUILD)/CMakeCache.txt

build: deps configure
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/loyaltyd $(if $(CONFIG),--config $(CONFIG))

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

bench: build
	./$(BUILD)/lt-bench

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer.
asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLT_SANITIZE=ON
	cmake --build build-asan -j $(JOBS)
	ctest --test-dir build-asan --output-on-failure

# The libFuzzer target (tests/fuzz) built with clang, ASan and UBSan, run for FUZZ_SECONDS on the
# committed seed corpus; new inputs go to build-fuzz/corpus, a crash to build-fuzz/artifacts/.
fuzz: deps
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLT_FUZZ=ON
	cmake --build build-fuzz -j $(JOBS) --target fuzz_ingest
	mkdir -p build-fuzz/corpus build-fuzz/artifacts
	./build-fuzz/fuzz_ingest -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -timeout=10 \
		-print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/ build-fuzz/corpus tests/fuzz/corpus

# The end-to-end pipeline test with loyaltyd under valgrind (memcheck): any error, or a leak,
# fails the test (tests/e2e/harness.c, LOYALTYD_WRAPPER).
valgrind: build
	LOYALTYD_WRAPPER="$(VALGRIND)" ctest --test-dir $(BUILD) --output-on-failure -R 'e2e/test_pipeline$$'

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-fuzz
