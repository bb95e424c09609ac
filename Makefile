# The commands people type. CMake does the building; ctest runs the tests.
#   make run    start the service (a private PostgreSQL under .data/ unless DATABASE_URL is set)
#   make test   every test, plain and under AddressSanitizer + UndefinedBehaviorSanitizer
#   make build  compile into build/
#   make deps   install the Debian packages (apt-get) and the pinned npm packages (tools/web-deps); nothing when present
#   make bench  every speed case beside its limit, one table (bench/run; not part of make test)
#   make fuzz   each libFuzzer target for FUZZ_SECONDS (default 600; tests/fuzz/run)
#   make soak   10 minutes of mixed load through a reload and a PostgreSQL restart (bench/soak)

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)

.PHONY: deps build build-asan run test test-plain test-asan bench fuzz soak clean

deps:
	@tools/deps

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOS_TEST_PG_PORT=25432 >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DOS_SANITIZE=ON -DOS_TEST_PG_PORT=25433 >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

run: build
	@ORDERSERVICE_BIN=$(BUILD)/orderservice tools/run

test-plain: build
	cd $(BUILD) && ctest --output-on-failure

test-asan: build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure

# Both suites run even when the first fails; ctest's summary of each is printed, the
# sanitized one last.
test: build build-asan
	@rc=0; \
	(cd $(BUILD) && ctest --output-on-failure) || rc=1; \
	echo "== under AddressSanitizer + UndefinedBehaviorSanitizer =="; \
	(cd $(ASAN_BUILD) && ctest --output-on-failure) || rc=1; \
	exit $$rc

FUZZ_SECONDS ?= 600

bench: build
	@bench/run

fuzz: build
	@FUZZ_BUILD=$(CURDIR)/$(BUILD)/fuzz OS_CORE_LIB=$(CURDIR)/$(BUILD)/liboscore.so tests/fuzz/run all $(FUZZ_SECONDS)

soak: build
	@bench/soak

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
