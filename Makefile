PY := .venv/bin/python
CUDA ?=

.PHONY: env test demo demo-rnn bench clean

# Re-runs setup only when a requirements file changed; setup_env.sh itself is quick when nothing did.
env: .venv/.requirements.stamp
.venv/.requirements.stamp: requirements.txt requirements-dev.txt scripts/setup_env.sh
	scripts/setup_env.sh $(CUDA)

ifneq ($(CUDA),)
.PHONY: .venv/.requirements.stamp
endif

test: env
	$(PY) -m pytest -q tests

demo: env
	$(PY) demo.py

demo-rnn: env
	$(PY) demo_rnn.py

clean:
	rm -rf .venv runs .pytest_cache
