# nncc developer entry points. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := build/demo
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider

.PHONY: demo test test-all toolchains bench lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: apt-get install python3-venv"; exit 1; }
	$(BIN)/pip install -q --upgrade pip "setuptools>=70" wheel
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

# Compile the keyword-spotting model shipped in tests/fixtures, build the generated project with
# its own Makefile (strict warnings), run it on the host and compare with numpy and onnxruntime.
demo: $(STAMP)
	$(BIN)/nncc compile tests/fixtures/mlperf_tiny/mlperf_kws_dscnn.onnx -o $(DEMO) --name kws --force
	$(MAKE) -C $(DEMO) CFLAGS="-O2 -std=c99 -Wall -Wextra -Werror -pedantic"
	$(BIN)/nncc analyze tests/fixtures/mlperf_tiny/mlperf_kws_dscnn.onnx
	$(BIN)/nncc validate tests/fixtures/mlperf_tiny/mlperf_kws_dscnn.onnx

# The fast suite (CI). Slow suites (light_* models, long sweeps) are marked `slow`.
test: $(STAMP) lint
	$(PYTEST) -m "not slow" -q -n 2

test-all: $(STAMP)
	$(PYTEST) -q -n 2

# Cross toolchains and QEMU from Debian (needs root); target tests skip without them.
toolchains:
	@if command -v arm-none-eabi-gcc >/dev/null && command -v riscv64-unknown-elf-gcc >/dev/null && \
	  echo '#include <math.h>' | riscv64-unknown-elf-gcc --specs=picolibc.specs -fsyntax-only -x c - 2>/dev/null && \
	  command -v qemu-system-arm >/dev/null && command -v qemu-system-riscv32 >/dev/null; then \
	  echo "cross toolchains present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm gcc-riscv64-unknown-elf qemu-system-misc \
	    picolibc-riscv64-unknown-elf; \
	else echo "not root: install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm gcc-riscv64-unknown-elf qemu-system-misc picolibc-riscv64-unknown-elf yourself"; fi

# The benchmark table (MLPerf Tiny x targets x float/int8: sizes, instruction counts, arenas vs
# TFLite Micro; host -O0 vs -O2) -> tests/bench/RESULTS.md. Needs `make toolchains` and valgrind.
bench: $(STAMP)
	$(BIN)/python tests/bench/bench_table.py

lint: $(STAMP)
	$(BIN)/ruff check nncc tests

clean:
	rm -rf build $(VENV)
