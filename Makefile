# libbarlow - Makefile
#
#   make                 libbarlow.a, libbarlow.so.X.Y.Z and the examples, in build/
#   make check           install missing Debian packages (as root), build, run every test
#   make check-mpi       data-parallel training under mpirun (Open MPI)
#   make check-asan      the Check suites under AddressSanitizer + UBSan
#   make check-clang     the Check suites built with clang
#   make check-aarch64   the Check suites cross-built for aarch64, run under qemu
#   make check-valgrind  the Check suites that fit under valgrind (memcheck), at the non-AVX-512 levels
#   make check-tsan      the concurrency suites under ThreadSanitizer (clang, LLVM's OpenMP, BLAS=reference)
#   make coverage        line and branch coverage per module (gcc --coverage, lcov), HTML in build/coverage/html
#   make fuzz            each libFuzzer target FUZZ_SECONDS (60) s: tests/fuzz/fuzz.mk, docs/fuzz.md
#   make check-fuzz      the fuzz targets: replay tests/fuzz/{corpus,regress}, then a fixed seeded run of each
#   make bench           benchmarks (not part of check)
#   make bench-mpi       data-parallel step throughput: 2 ranks x 1 thread vs 1 x 2 threads
#   make demo            the main job: pretrain + evaluate on Fashion-MNIST
#   make install / uninstall   library, barlow.h + barlow.hpp, barlow.pc, CMake config and the
#                        barlow program; honour PREFIX LIBDIR INCLUDEDIR BINDIR DESTDIR
#   make install-python  the Python package into the virtual environment VENV (made if missing)
#   make check-python    the Python package's tests (pytest, in a throw-away venv)
#   make abi-check       abidiff against tests/abi/barlow.abi
#   make abi-baseline    rewrite that baseline (only with a CHANGELOG entry saying why)
#
# BLAS=openblas (default, Debian libopenblas-dev) or BLAS=reference (Debian libblas-dev).

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
DESTDIR    ?=

CC         ?= cc
CXX        ?= c++
CFLAGS     ?= -O2 -g
BUILD      ?= build
BLAS       ?= openblas
PKG_CONFIG ?= pkg-config
PYTHON     ?= python3
# Debian's interpreter: the one that sees python3-torch when it is installed
SYSPYTHON  ?= /usr/bin/python3

# Version, read from the header as zstd does.
VERSION_MAJOR := $(shell sed -n 's/^\#define BT_VERSION_MAJOR  *\([0-9]*\).*/\1/p' include/barlow.h)
VERSION_MINOR := $(shell sed -n 's/^\#define BT_VERSION_MINOR  *\([0-9]*\).*/\1/p' include/barlow.h)
VERSION_PATCH := $(shell sed -n 's/^\#define BT_VERSION_PATCH  *\([0-9]*\).*/\1/p' include/barlow.h)
VERSION       := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)
SONAME        := libbarlow.so.$(VERSION_MAJOR)
SHARED        := libbarlow.so.$(VERSION)

ifeq ($(BLAS),openblas)
  BLAS_CFLAGS := -DBT_BLAS_OPENBLAS
  BLAS_LIBS   := $(shell $(PKG_CONFIG) --libs openblas 2>/dev/null || echo -lopenblas)
  BLAS_PC     := openblas
else ifeq ($(BLAS),reference)
  # Debian's alternatives point libblas.so.3 at OpenBLAS when both are installed:
  # link the netlib copy by path and keep it first on the run path.
  BLAS_REF_DIR := $(shell $(PKG_CONFIG) --variable=libdir blas-netlib 2>/dev/null || echo /usr/lib/x86_64-linux-gnu)/blas
  BLAS_CFLAGS  :=
  BLAS_LIBS    := -L$(BLAS_REF_DIR) -Wl,-rpath,$(BLAS_REF_DIR) -lblas
  BLAS_PC      := blas-netlib
else
  $(error BLAS must be openblas or reference, not '$(BLAS)')
endif

WARN      := -Wall -Wextra -Wpedantic -Wstrict-prototypes -Wmissing-prototypes -Wshadow
LIB_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) -fPIC -fvisibility=hidden -fopenmp \
             -Iinclude -Ilibbarlow $(BLAS_CFLAGS) $(CFLAGS)
LIB_LIBS   = $(BLAS_LIBS) -fopenmp -lpthread -lm
LDFLAGS   ?=

# One folder per module (docs/ARCHITECTURE.md); includes are written from libbarlow/.
# Files named *_x86.c, *_avx2.c, *_avx512.c hold x86 code only: other targets leave them out.
TARGET_X86 := $(filter x86_64% i386% i486% i586% i686%,$(shell $(CC) -dumpmachine))
LIB_SRC := $(sort $(wildcard libbarlow/*/*.c))
ifeq ($(TARGET_X86),)
  LIB_SRC := $(filter-out %_x86.c %_avx2.c %_avx512.c,$(LIB_SRC))
endif
LIB_OBJ := $(patsubst libbarlow/%.c,$(BUILD)/obj/%.o,$(LIB_SRC))
LIB_HDR := include/barlow.h $(wildcard libbarlow/*/*.h)

CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell $(PKG_CONFIG) --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)
TEST_SRC     := $(sort $(wildcard tests/check_*.c))
TEST_SUITES  := $(patsubst tests/check_%.c,%,$(TEST_SRC))
TEST_OBJ     := $(patsubst tests/%.c,$(BUILD)/tests/%.o,$(TEST_SRC) tests/runner.c $(wildcard tests/util_*.c))
TEST_CFLAGS   = -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) -Wno-missing-prototypes -Iinclude \
                -Ilibbarlow -Itests -I$(BUILD)/tests $(CHECK_CFLAGS) -fopenmp $(CFLAGS)

BENCH_SRC    := $(sort $(wildcard tests/bench/bench_*.c))
BENCHES      := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

# examples/mpi_*.c link Open MPI: built only by `make MPI=1` (mpicc, Debian's libopenmpi-dev).
MPI          ?= 0
MPICC        ?= mpicc
EXAMPLES     := $(patsubst examples/%.c,$(BUILD)/examples/%,$(sort $(filter-out examples/mpi_%,$(wildcard examples/*.c)))) \
                $(patsubst examples/%.cpp,$(BUILD)/examples/%,$(sort $(wildcard examples/*.cpp))) \
                $(BUILD)/examples/barlow
ifeq ($(MPI),1)
  EXAMPLES += $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/mpi_*.c))
endif
EXAMPLE_LIBS_augment_grid := -lz
# Extra link flags per example: the barlow command reads gzip (zlib) and images (Debian's libstb).
EXAMPLE_LIBS_barlow := -lz -lstb
EX_CFLAGS     = -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) -Iinclude $(CFLAGS)

.PHONY: lint-alloc
.PHONY: all lib examples check check-mpi check-asan check-clang check-aarch64 check-valgrind run-tests deps abi-check abi-baseline \
        install uninstall install-python check-python bench bench-mpi demo clean FORCE

all: lib examples

lib: $(BUILD)/libbarlow.a $(BUILD)/$(SHARED)

$(BUILD)/obj/%.o: libbarlow/%.c $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) -c $< -o $@

$(BUILD)/libbarlow.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/$(SHARED): $(LIB_OBJ) libbarlow/libbarlow.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=libbarlow/libbarlow.map \
	    -Wl,--no-undefined -Wl,-z,noexecstack -Wl,-z,relro -Wl,-z,now \
	    $(LDFLAGS) -o $@ $(LIB_OBJ) $(LIB_LIBS)
	ln -sf $(SHARED) $(BUILD)/$(SONAME)
	ln -sf $(SHARED) $(BUILD)/libbarlow.so

$(BUILD)/obj $(BUILD)/tests $(BUILD)/examples $(BUILD)/bench:
	mkdir -p $@

# Examples link the static library so they run from the tree without LD_LIBRARY_PATH.
examples: $(EXAMPLES)

$(BUILD)/examples/%: examples/%.c $(BUILD)/libbarlow.a include/barlow.h | $(BUILD)/examples
	$(CC) $(EX_CFLAGS) $< -o $@ $(BUILD)/libbarlow.a $(LIB_LIBS) $(EXAMPLE_LIBS_$*) $(LDFLAGS)

$(BUILD)/examples/mpi_%: examples/mpi_%.c examples/mpi_comm.h $(BUILD)/libbarlow.a include/barlow.h | $(BUILD)/examples
	$(MPICC) $(EX_CFLAGS) $< -o $@ $(BUILD)/libbarlow.a $(LIB_LIBS) $(LDFLAGS)

$(BUILD)/examples/%: examples/%.cpp $(BUILD)/libbarlow.a include/barlow.h | $(BUILD)/examples
	$(CXX) -std=c++11 -Wall -Wextra -Wpedantic -Iinclude $(CFLAGS) $< -o $@ $(BUILD)/libbarlow.a $(LIB_LIBS) $(LDFLAGS)

# The barlow command has a folder of its own, examples/barlow/: one object per file, under
# $(BUILD)/examples/obj/barlow/ (the program itself is $(BUILD)/examples/barlow).
# With MPI=1 it runs under mpirun (examples/barlow/dist.c): its objects are compiled with
# -DBARLOW_MPI by $(MPICC) into obj/barlow-mpi/ and linked with $(MPICC); the stamp
# obj/barlow.mpi relinks the program when MPI changes between builds.
BARLOW_SRC := $(sort $(wildcard examples/barlow/*.c))
BARLOW_DIR := $(BUILD)/examples/obj/barlow$(if $(filter 1,$(MPI)),-mpi)
BARLOW_OBJ := $(patsubst examples/barlow/%.c,$(BARLOW_DIR)/%.o,$(BARLOW_SRC))
BARLOW_CC  := $(if $(filter 1,$(MPI)),$(MPICC) -DBARLOW_MPI,$(CC))

$(BARLOW_DIR)/%.o: examples/barlow/%.c $(wildcard examples/barlow/*.h) examples/mpi_comm.h include/barlow.h
	@mkdir -p $(@D)
	$(BARLOW_CC) $(EX_CFLAGS) -c $< -o $@

$(BUILD)/examples/obj/barlow.mpi: FORCE
	@mkdir -p $(@D); [ "$$(cat $@ 2>/dev/null)" = "$(MPI)" ] || echo "$(MPI)" > $@

$(BUILD)/examples/barlow: $(BARLOW_OBJ) $(BUILD)/libbarlow.a $(BUILD)/examples/obj/barlow.mpi | $(BUILD)/examples
	$(BARLOW_CC) $(EX_CFLAGS) $(BARLOW_OBJ) -o $@ $(BUILD)/libbarlow.a $(LIB_LIBS) $(EXAMPLE_LIBS_barlow) $(LDFLAGS)

# ---- tests ------------------------------------------------------------------

# The runner's suite list is generated from the file names: adding tests/check_foo.c
# (exporting Suite *foo_suite(void)) is all it takes to add a suite.
$(BUILD)/tests/suites.inc: $(TEST_SRC) | $(BUILD)/tests
	printf 'BT_SUITE(%s)\n' $(TEST_SUITES) > $@.tmp && mv $@.tmp $@

$(BUILD)/tests/%.o: tests/%.c $(LIB_HDR) $(wildcard tests/*.h) $(BUILD)/tests/suites.inc | $(BUILD)/tests
	$(CC) $(TEST_CFLAGS) -c $< -o $@

$(BUILD)/tests/runner: $(TEST_OBJ) $(BUILD)/libbarlow.a
	$(CC) $(TEST_CFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libbarlow.a $(CHECK_LIBS) $(LIB_LIBS) -lpthread

deps:
	@bash .ci/deps.sh check

# Everything `make check` runs; the Check suites go last so their summary closes the log.
check: deps
	$(MAKE) all $(BUILD)/tests/runner
	$(MAKE) abi-check lint-alloc
	$(BUILD)/examples/list_options | diff -u docs/options.md - && echo "docs: options.md is current"
	bash tests/install_test.sh
	bash tests/cxx/run.sh $(BUILD)
	$(PYTHON) tests/python/smoke.py $(BUILD)/$(SHARED)
	$(MAKE) check-python
	$(SYSPYTHON) tests/python/torch_interop.py $(BUILD)/$(SHARED)
	BUILD=$(BUILD) bash tests/examples_test.sh
	BUILD=$(BUILD) bash tests/cli_test.sh
	$(MAKE) check-mpi
	$(MAKE) run-tests

# The whole suite at every CPU level the build has, best first so that the
# portable level's summary closes the log; the runner skips, with a line,
# a level this CPU lacks. CPU_LEVELS=avx2 runs one.
ifeq ($(TARGET_X86),)
CPU_LEVELS ?= generic
else
CPU_LEVELS ?= avx512 avx2 generic
endif
run-tests: $(BUILD)/tests/runner
	cd tests && for l in $(CPU_LEVELS); do BT_CPU=$$l ../$(BUILD)/tests/runner || exit 1; done

# Data-parallel runs under mpirun (tests/mpi/run.sh), Open MPI from Debian.
check-mpi:
	@bash .ci/deps.sh mpi
	$(MAKE) lib
	BUILD=$(BUILD) MPICC="$(MPICC)" CFLAGS="$(CFLAGS)" LIB_LIBS="$(LIB_LIBS)" bash tests/mpi/run.sh
	BUILD=$(BUILD) bash tests/cli_mpi_test.sh

check-asan: deps
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	    LDFLAGS="-fsanitize=address,undefined" run-tests

# The library and the Check suites built with clang (LLVM's OpenMP), at every level.
# tests/omp_stale.sh first: libomp aborts when a stale registration file has its pid.
check-clang:
	@bash .ci/deps.sh clang
	$(MAKE) CC=clang BUILD=build/clang build/clang/tests/runner
	cd tests && for l in $(CPU_LEVELS); do bash omp_stale.sh; BT_CPU=$$l ../build/clang/tests/runner || exit 1; done

# The library and the Check suites cross-built for aarch64 and run under qemu
# (called explicitly: no binfmt_misc here), at the generic level, the only one
# aarch64 has. The whole suite; docs/perf.md says how long it takes.
# -L /: the arm64 ld.so, libc and libgomp of the :arm64 packages (qemu's default prefix
# could point elsewhere; the cross sysroot's older libc hangs beside libc6:arm64's).
# Emulated, the suite runs ~20x slower (the loss golden cases ~50x: 3-4 min of their 240 s
# timeout), so Check's timeouts are stretched.
AARCH64_RUN ?= qemu-aarch64-static -L /
AARCH64_CK_TIMEOUT_MULTIPLIER ?= 10
check-aarch64:
	@bash .ci/deps.sh aarch64
	$(MAKE) CC=aarch64-linux-gnu-gcc PKG_CONFIG=aarch64-linux-gnu-pkg-config BUILD=build/aarch64 \
	    build/aarch64/tests/runner
	cd tests && CK_TIMEOUT_MULTIPLIER=$(AARCH64_CK_TIMEOUT_MULTIPLIER) $(AARCH64_RUN) \
	    ../build/aarch64/tests/runner

# The suites that fit (about 4 min per level here) under memcheck: errors and definite leaks
# fail. check-asan covers the rest: the long numeric suites (model, layer, loss, sgemm), crash
# (fork and SIGKILL) and alloc (about 1,900 model lives; its live-allocation count is its own
# leak check). valgrind 3.19 cannot run AVX-512 code, so it checks the other levels.
# VALGRIND_SUITES=all runs the whole runner.
VALGRIND_SUITES ?= config cpu error rng tensor threads xent safetensors checkpoint optim augment \
                   comm loss_comm numeric layer_fd
VALGRIND_LEVELS ?= $(filter-out avx512,$(CPU_LEVELS))
check-valgrind:
	@bash .ci/deps.sh valgrind
	$(MAKE) $(BUILD)/tests/runner
	cd tests && export CK_FORK=no; for l in $(VALGRIND_LEVELS); do for s in $(VALGRIND_SUITES); do \
	  if [ $$s = all ]; then unset CK_RUN_SUITE; else export CK_RUN_SUITE=$$s; fi; \
	  BT_CPU=$$l valgrind -q --error-exitcode=1 --leak-check=full --show-leak-kinds=definite \
	    --errors-for-leak-kinds=definite ../$(BUILD)/tests/runner || exit 1; \
	done; done

# The concurrency suites under ThreadSanitizer (docs/THREADS.md, "How it is checked"): clang,
# LLVM's OpenMP and the netlib CBLAS; libgomp and OpenBLAS synchronise their threads in code
# TSan does not see, which it reports as races. Archer (libarcher.so, in libomp-14-dev) tells
# TSan what OpenMP's forks, barriers and joins order; ignore_noninstrumented_modules=1 stops it
# checking the mutexes libomp takes inside itself (not instrumented, ordered by its own atomics).
# Any report ends the run with status 66 (CK_FORK=no: one process, so the status reaches make).
# TSAN_SUITES: handles on several threads at once (threads, comm, loss_comm), the per-thread
# error text (error), the CPU probe (cpu), and the suites whose handles run OpenMP teams of 2+
# threads (layer, layer_fd, augment, optim); TSAN_SUITES=all runs the whole runner (about 2 min
# per level; with BLAS=reference it fails loss golden case 3, TSan or not).
TSAN_SUITES ?= threads error cpu comm loss_comm layer layer_fd augment optim
TSAN_ARCHER ?= /usr/lib/llvm-14/lib/libarcher.so
# Line and branch coverage (docs/coverage.md): the library, the Check runner and the examples
# built with gcc --coverage in build/coverage (never build/), the Check suites run at every
# CPU level, then the examples' and the barlow command's scripts against that build; lcov
# gathers the counts of the library's objects, tests/coverage_report.py prints them per module
# (a folder of libbarlow/) and genhtml writes build/coverage/html/index.html. -O0: optimised
# code moves and merges lines, which misattributes counts (-O1 reports about 1.5 points more);
# the run is slower (docs/coverage.md). The counts of the previous run are removed first, the
# whole folder when COV_CFLAGS changed (make would keep objects built with other flags).
COV_BUILD  ?= build/coverage
COV_CFLAGS ?= -O0 -g --coverage
COV_LCOV    = lcov --quiet --rc lcov_branch_coverage=1
COV_CK_TIMEOUT_MULTIPLIER ?= 4
# COV_SCRIPTS=0: the Check suites alone, without the examples' and the barlow command's scripts
COV_SCRIPTS ?= 1
.PHONY: coverage
coverage:
	@bash .ci/deps.sh coverage
	@[ "$$(cat $(COV_BUILD)/cflags 2>/dev/null)" = "$(COV_CFLAGS)" ] || \
	  { rm -rf $(COV_BUILD) && mkdir -p $(COV_BUILD) && echo "$(COV_CFLAGS)" > $(COV_BUILD)/cflags; }
	$(MAKE) BUILD=$(COV_BUILD) CFLAGS="$(COV_CFLAGS)" LDFLAGS="--coverage" all $(COV_BUILD)/tests/runner
	find $(COV_BUILD) -name '*.gcda' -delete
	rm -rf $(COV_BUILD)/html $(COV_BUILD)/*.info
	cd tests && for l in $(CPU_LEVELS); do \
	  CK_TIMEOUT_MULTIPLIER=$(COV_CK_TIMEOUT_MULTIPLIER) BT_CPU=$$l ../$(COV_BUILD)/tests/runner || exit 1; done
	$(COV_LCOV) --capture --directory $(COV_BUILD)/obj --base-directory . --output-file $(COV_BUILD)/checks-all.info
	$(COV_LCOV) --extract $(COV_BUILD)/checks-all.info '$(CURDIR)/libbarlow/*' --output-file $(COV_BUILD)/checks.info
	if [ "$(COV_SCRIPTS)" != 0 ]; then BUILD=$(COV_BUILD) bash tests/examples_test.sh && \
	  BUILD=$(COV_BUILD) bash tests/cli_test.sh; fi
	$(COV_LCOV) --capture --directory $(COV_BUILD)/obj --base-directory . --output-file $(COV_BUILD)/all.info
	$(COV_LCOV) --extract $(COV_BUILD)/all.info '$(CURDIR)/libbarlow/*' --output-file $(COV_BUILD)/libbarlow.info
	genhtml --quiet --branch-coverage --title libbarlow --output-directory $(COV_BUILD)/html $(COV_BUILD)/libbarlow.info
	@echo; echo "coverage: the Check suites alone"; $(SYSPYTHON) tests/coverage_report.py $(COV_BUILD)/checks.info
	@echo; echo "coverage: with the scripts, the report ($(COV_BUILD)/libbarlow.info)"; \
	  $(SYSPYTHON) tests/coverage_report.py $(COV_BUILD)/libbarlow.info
	@echo "coverage: HTML report in $(COV_BUILD)/html/index.html"

.PHONY: check-tsan
check-tsan:
	@bash .ci/deps.sh tsan
	@test -f $(TSAN_ARCHER) || { echo "check-tsan: no Archer at $(TSAN_ARCHER) (TSAN_ARCHER=...)" >&2; exit 1; }
	$(MAKE) CC=clang BLAS=reference BUILD=build/tsan CFLAGS="-O1 -g -fsanitize=thread" \
	    LDFLAGS="-fsanitize=thread" build/tsan/tests/runner
	bash tests/omp_stale.sh
	cd tests && export CK_FORK=no OMP_TOOL_LIBRARIES=$(TSAN_ARCHER) \
	    TSAN_OPTIONS="halt_on_error=1 exitcode=66 ignore_noninstrumented_modules=1"; \
	for l in $(CPU_LEVELS); do for s in $(TSAN_SUITES); do \
	  if [ $$s = all ]; then unset CK_RUN_SUITE; else export CK_RUN_SUITE=$$s; fi; \
	  BT_CPU=$$l ../build/tsan/tests/runner || exit $$?; \
	done; done

# Every allocation goes through common/memory.c, where the fault hook of tests/check_alloc.c sees it.
ALLOC_CALLS := (^|[^_a-zA-Z0-9.>])(malloc|calloc|realloc|free|strdup|strndup|posix_memalign|aligned_alloc)\(
lint-alloc:
	@! grep -nE '$(ALLOC_CALLS)' $(filter-out libbarlow/common/memory.c,$(LIB_SRC)) || \
	  { echo "lint-alloc: allocate with the bti_* calls of common/memory.c" >&2; exit 1; }
	@echo "lint-alloc: every allocation goes through common/memory.c"

abi-check: lib
	bash tests/abi/check.sh $(BUILD)/$(SHARED) $(SONAME)

abi-baseline: lib
	abidw --headers-dir include --drop-private-types --out-file tests/abi/barlow.abi $(BUILD)/$(SHARED)

# libFuzzer targets (make fuzz, make check-fuzz): tests/fuzz/fuzz.mk, docs/fuzz.md.
include tests/fuzz/fuzz.mk

# ---- install ----------------------------------------------------------------

# The generated files below embed these; the stamp changes only when one of them does,
# so a second install with another PREFIX regenerates them instead of shipping stale ones.
INSTALL_VARS := prefix=$(PREFIX) libdir=$(LIBDIR) includedir=$(INCLUDEDIR) bindir=$(BINDIR) \
                version=$(VERSION) blas=$(BLAS_LIBS)
CMAKEDIR     ?= $(LIBDIR)/cmake/barlow
$(BUILD)/install.vars: FORCE | $(BUILD)/obj
	@echo '$(INSTALL_VARS)' | cmp -s - $@ || echo '$(INSTALL_VARS)' > $@
FORCE:

$(BUILD)/barlow.pc: barlow.pc.in $(BUILD)/install.vars
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' -e 's|@BLAS_LIBS@|$(BLAS_LIBS)|' barlow.pc.in > $@

# CMake: find_package(barlow) gives barlow::barlow (shared) and barlow::barlow_static.
$(BUILD)/cmake/%.cmake: cmake/%.cmake.in $(BUILD)/install.vars
	@mkdir -p $(@D)
	sed -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@SHARED@|$(SHARED)|' -e 's|@SONAME@|$(SONAME)|' -e 's|@BLAS_LIBS@|$(BLAS_LIBS)|' $< > $@
CMAKE_FILES := $(BUILD)/cmake/barlowConfig.cmake $(BUILD)/cmake/barlowConfigVersion.cmake

install: lib $(BUILD)/examples/barlow $(BUILD)/barlow.pc $(CMAKE_FILES)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(CMAKEDIR)
	install -m 644 $(BUILD)/libbarlow.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/$(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf $(SHARED) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SHARED) $(DESTDIR)$(LIBDIR)/libbarlow.so
	install -m 644 include/barlow.h include/barlow.hpp $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(BUILD)/barlow.pc $(DESTDIR)$(LIBDIR)/pkgconfig/
	install -m 644 $(CMAKE_FILES) $(DESTDIR)$(CMAKEDIR)/
	install -m 755 $(BUILD)/examples/barlow $(DESTDIR)$(BINDIR)/

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libbarlow.a $(DESTDIR)$(LIBDIR)/$(SHARED) \
	      $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libbarlow.so \
	      $(DESTDIR)$(INCLUDEDIR)/barlow.h $(DESTDIR)$(INCLUDEDIR)/barlow.hpp \
	      $(DESTDIR)$(LIBDIR)/pkgconfig/barlow.pc $(DESTDIR)$(BINDIR)/barlow \
	      $(DESTDIR)$(CMAKEDIR)/barlowConfig.cmake $(DESTDIR)$(CMAKEDIR)/barlowConfigVersion.cmake
	-rmdir $(DESTDIR)$(CMAKEDIR) 2>/dev/null

# The Python package (libbarlow/python): into the virtual environment VENV, made with
# --system-site-packages if it does not exist; it looks for the library in $(LIBDIR) first.
VENV ?= $(HOME)/.venvs/barlow
install-python:
	PYTHON=$(SYSPYTHON) bash libbarlow/python/install.sh "$(VENV)" "$(LIBDIR)"

# The package's pytest suite in a fresh venv against this build (tests/python/run.sh).
check-python: lib $(BUILD)/examples/train_loop
	PYTHON=$(SYSPYTHON) bash tests/python/run.sh $(BUILD)

# ---- long runs ----------------------------------------------------------------

# Each tests/bench/bench_X.c is a program; it runs its PyTorch twin tests/bench/bench_X.py
# itself (when PyTorch is installed) so both are measured in one run.
$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libbarlow.a tests/bench/bench_util.h | $(BUILD)/bench
	$(CC) $(TEST_CFLAGS) -Wno-unused-function $< -o $@ $(BUILD)/libbarlow.a $(LIB_LIBS) $(LDFLAGS)

bench: all
	@bash .ci/deps.sh bench
	$(MAKE) $(BENCHES)
	@for b in $(BENCHES); do echo; $$b || exit 1; done
	@echo; $(SYSPYTHON) tests/bench/python_overhead.py $(BUILD)

# Data-parallel throughput on this machine: the Fashion-MNIST preset's step at 2 ranks x 1
# thread against 1 process x 2 threads (docs/distributed.md).
bench-mpi: lib
	@bash .ci/deps.sh mpi
	@mkdir -p $(BUILD)/bench
	$(MPICC) $(EX_CFLAGS) -Iexamples tests/mpi/throughput.c -o $(BUILD)/bench/mpi_throughput \
	    $(BUILD)/libbarlow.a $(LIB_LIBS) $(LDFLAGS)
	@export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
	    OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none; \
	for i in 1 2 3; do \
	  mpirun --oversubscribe --bind-to none -n 1 $(BUILD)/bench/mpi_throughput 2 $(MPI_STEPS); \
	  mpirun --oversubscribe --bind-to none -n 2 $(BUILD)/bench/mpi_throughput 1 $(MPI_STEPS); \
	done
MPI_STEPS ?= 15

# The main job: Barlow Twins on Fashion-MNIST for a fixed time budget, then the linear probe
# and kNN beside a random-init encoder and raw pixels (docs/results.md). The command picks
# OpenBLAS's fast kernels itself (examples/barlow/fast_blas.c).
DEMO_FLAGS ?= --minutes 10
demo:
	@bash .ci/deps.sh demo
	$(MAKE) all
	rm -rf $(BUILD)/demo
	$(BUILD)/examples/barlow pretrain --out $(BUILD)/demo $(DEMO_FLAGS)

clean:
	rm -rf $(BUILD)
