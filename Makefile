PY := .venv/bin/python
CUDA ?=

.PHONY: env kernels test test-fast demo demo-rnn bench gpu-check clean

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

# The check a GPU user runs first and reports (scripts/gpu_check.py; README "Several GPUs"), a few minutes on one
# GPU of an environment made with `make env CUDA=...`; GPUS=N (N > 1) then adds the data-parallel check under
# `mpirun -n N`. Every check runs, and the target fails if one did.
GPUS ?= 1
gpu-check:
	@status=0; $(PY) scripts/gpu_check.py || status=1; \
	if [ "$(GPUS)" -gt 1 ]; then mpirun -n $(GPUS) $(PY) scripts/gpu_check.py --comm || status=1; fi; \
	exit $$status

demo: env
	$(PY) -m scripts.demo

demo-rnn: env
	$(PY) -m scripts.demo_rnn

clean:
	rm -rf .venv runs .pytest_cache ops/_cpu_kernels.so
