# tests/fuzz/fuzz.mk - libFuzzer targets (docs/fuzz.md), included by the Makefile.
#
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="safetensors config"]
#        each target for FUZZ_SECONDS (-max_total_time) on its working corpus
#        build/fuzz/corpus/<target> (seeded from tests/fuzz/corpus/<target>); prints
#        execs and crashes per target; crash inputs land in build/fuzz/crashes/<target>/
#   make check-fuzz
#        builds every target, replays tests/fuzz/corpus/ and tests/fuzz/regress/ (each
#        input must pass), then fuzzes each target a fixed number of seeded runs
#        (tests/fuzz/run.sh), cut at FUZZ_CHECK_SECONDS (60) at most
#   make fuzz-seeds   regenerate tests/fuzz/corpus/ (tests/fuzz/make_seeds.sh)
#
# Everything is clang with -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all;
# the library is rebuilt with the same flags (and -fsanitize=fuzzer-no-link) into
# build/fuzz/lib, so the private bti_* symbols of libbarlow.a are reachable.

FUZZ_BUILD         ?= build/fuzz
FUZZ_CC            ?= clang
FUZZ_TARGETS       ?= safetensors checkpoint config idx cifar folder
FUZZ_ALL           := safetensors checkpoint config idx cifar folder
FUZZ_SECONDS       ?= 60
FUZZ_CHECK_SECONDS ?= 60
# extra libFuzzer flags for make fuzz, e.g. FUZZ_FLAGS="-jobs=2 -workers=2"
FUZZ_FLAGS         ?=
FUZZ_SAN           := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LIB_CFLAGS    := -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_OBJ_CFLAGS    := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O1 -g -fno-omit-frame-pointer \
                      $(FUZZ_SAN) -fsanitize=fuzzer-no-link -Iinclude -Ilibbarlow -Iexamples/barlow -Itests/fuzz
FUZZ_CFLAGS        := $(FUZZ_OBJ_CFLAGS) -fsanitize=fuzzer
FUZZ_LIB           := $(FUZZ_BUILD)/lib/libbarlow.a
# How the targets run (one thread, sanitizer options, libFuzzer's limits): tests/fuzz/run.sh.

# The files of the barlow command each target links (examples/barlow/data.h, cli.h), and
# stb_image compiled with the same flags (tests/fuzz/stb_image_impl.c), as objects in
# $(FUZZ_BUILD)/obj/.
FUZZ_DATA_OBJ   := $(FUZZ_BUILD)/obj/data.o $(FUZZ_BUILD)/obj/paths.o $(FUZZ_BUILD)/obj/stb_image_impl.o
FUZZ_OBJ_idx    := $(FUZZ_DATA_OBJ)
FUZZ_OBJ_cifar  := $(FUZZ_DATA_OBJ)
FUZZ_OBJ_folder := $(FUZZ_DATA_OBJ)
FUZZ_OBJ_config := $(FUZZ_BUILD)/obj/config.o $(FUZZ_BUILD)/obj/util.o $(FUZZ_DATA_OBJ)
# kept: make would delete them as intermediates of the fuzz_% rule
.SECONDARY: $(FUZZ_DATA_OBJ) $(FUZZ_BUILD)/obj/config.o $(FUZZ_BUILD)/obj/util.o
FUZZ_LIBS_idx    := -lz
FUZZ_LIBS_cifar  := -lz
FUZZ_LIBS_folder := -lz
FUZZ_LIBS_config := -lz

$(FUZZ_BUILD)/obj/%.o: examples/barlow/%.c $(wildcard examples/barlow/*.h) include/barlow.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_OBJ_CFLAGS) -c $< -o $@

# stb_image adds a zero offset to a NULL pointer and memcpy's 0 bytes from it (a zero-length
# PNG IDAT chunk): undefined in C, harmless, and not ours to change: those two UBSan checks
# are off for it (ASan and the other checks stay).
$(FUZZ_BUILD)/obj/stb_image_impl.o: tests/fuzz/stb_image_impl.c tests/fuzz/fuzz.mk
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_OBJ_CFLAGS) -fno-sanitize=pointer-overflow,nonnull-attribute -c $< -o $@

.PHONY: fuzz check-fuzz fuzz-build fuzz-seeds fuzz-lib

# The library's own rules build it (the sub-make, FUZZ_SUBMAKE=1, leaves these out).
ifneq ($(FUZZ_SUBMAKE),1)
fuzz-lib:
	@bash .ci/deps.sh fuzz
	$(MAKE) FUZZ_SUBMAKE=1 CC=$(FUZZ_CC) BUILD=$(FUZZ_BUILD)/lib CFLAGS="$(FUZZ_LIB_CFLAGS)" $(FUZZ_LIB)

$(FUZZ_LIB): fuzz-lib
endif

.SECONDEXPANSION:
$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(FUZZ_LIB) $(LIB_HDR) $$(FUZZ_OBJ_$$*)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_OBJ_$*) -o $@ $(FUZZ_LIB) $(LIB_LIBS) $(FUZZ_LIBS_$*)

fuzz-build: $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_ALL))

fuzz-seeds:
	bash tests/fuzz/make_seeds.sh

# One target after another; the summary line of each is "fuzz <target>: N execs in S s,
# C crashes". A crash does not stop the others; the status says whether any was found.
fuzz: $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_TARGETS))
	@bash tests/fuzz/run.sh run $(FUZZ_BUILD) $(FUZZ_SECONDS) "$(FUZZ_FLAGS)" $(FUZZ_TARGETS)

check-fuzz: fuzz-build
	@bash tests/fuzz/run.sh check $(FUZZ_BUILD) $(FUZZ_CHECK_SECONDS) "" $(FUZZ_ALL)
