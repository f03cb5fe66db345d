PY := .venv/bin/python
CUDA ?=

.PHONY: env kernels test test-fast demo demo-rnn bench clean

# Re-runs setup only when a requirements file changed; setup_env.sh itself is quick when nothing did.
env: .venv/.requirements.stamp ops/_cpu_kernels.so
.venv/.requirements.stamp: requirements.txt requirements-dev.txt scripts/setup_env.sh
	scripts/setup_env.sh $(CUDA)

# The multi-threaded cpu kernels (ops/*.c, one library), built for this machine's cpu; without a C compiler
# with OpenMP the runs use nnabla's own kernels, and say so.
KERNEL_SOURCES := $(wildcard ops/*.c)
kernels: ops/_cpu_kernels.so
ops/_cpu_kernels.so: $(KERNEL_SOURCES) $(wildcard ops/*.h)
	$(CC) -O3 -march=native -fopenmp -shared -fPIC -o $@ $(KERNEL_SOURCES) || \
		echo "note: ops/*.c did not build; runs will use nnabla's single-threaded cpu kernels"

ifneq ($(CUDA),)
.PHONY: .venv/.requirements.stamp
endif

# Two pytest workers (pytest-xdist), one a core of the 2-core machines the suite is sized for.
test: env
	$(PY) -m pytest -q -n 2 tests

# The fast lane: everything but the tests marked slow (under a minute).
test-fast: env
	$(PY) -m pytest -q -n 2 -m "not slow" tests

demo: env
	$(PY) -m scripts.demo

demo-rnn: env
	$(PY) -m scripts.demo_rnn

clean:
	rm -rf .venv runs .pytest_cache ops/_cpu_kernels.so
