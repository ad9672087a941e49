# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data/cifar10-train-jpg.tar.gz
MODEL  ?= models/cifar10-toy-d16.pt
# demo and view serve every bundled model (models/__init__.py) unless given MODELS="[NAME=]a.pt ..."
# (MODEL=... on the command line works too)
MODELS ?=
SERVED = $(or $(MODELS),$(if $(filter command line environment,$(origin MODEL)),$(MODEL)))

.PHONY: install lock demo view test bench soak report train-default clean

install: $(VENV)/.installed

# requirements.lock pins every dependency (constraints, not requirements): the versions come from
# the project, not from whatever PyPI has that day (a new onnxruntime changed the benchmarks).
# A changed lock reinstalls.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	# torch/torchvision first, pinned: an unpinned resolve could pull a different CUDA build
	$(BIN)/pip install -q -c requirements.lock torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c requirements.lock -e '.[all]'
	# Debian's prometheus: the monitoring tests scrape a real tritonserver with it; its promtool
	# checks and unit-tests the alerting rules (tests/test_alerts.py)
	command -v prometheus >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	# Debian's chromium: the viewer test drives it with Playwright (never `playwright install`)
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	touch $@

# Refresh requirements.lock (then review and commit its diff): pyproject's ranges resolved today,
# in a throwaway venv with no constraints, so the lock never carries .venv's leftovers (hand
# installs, older releases). The same steps as install; gattanet itself and pip/setuptools/wheel
# stay out of the lock.
lock:
	rm -rf .lockvenv
	$(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install -q --upgrade pip setuptools wheel
	.lockvenv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	.lockvenv/bin/pip install -q -e '.[all]'
	.lockvenv/bin/pip check
	.lockvenv/bin/pip freeze --exclude-editable > .lockvenv/freeze.txt
	# written aside and moved: a failed step above leaves the old lock in place
	{ printf '%s\n' \
	    '# requirements.lock: the exact versions `make install` (so `make test`, `make demo`) installs,' \
	    '# given to both of its pip installs as constraints (`pip install -c requirements.lock`).' \
	    '# Made by `make lock`, which refreshes it: a fresh venv gets torch==2.14.1 torchvision==0.29.1,' \
	    "# then '.[all]' from pyproject.toml with no constraints, and \`pip freeze --exclude-editable\`" \
	    "# (less gattanet, pip, setuptools, wheel) is written here. Resolved on $$(.lockvenv/bin/python -c \
	        'import platform as p; print(p.python_implementation(), p.python_version(), p.system(), p.machine())')."; \
	  grep -v -i -E '^(gattanet|pip|setuptools|wheel)==' .lockvenv/freeze.txt; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock
	rm -rf .lockvenv

demo: install
	$(BIN)/python scripts/demo.py $(if $(SERVED),--model $(SERVED)) --images samples --out out/demo

# The browser viewer on the bundled models (a model picker): tritonserver + `gatta-client view` on http://127.0.0.1:7860/
view: install
	$(BIN)/python scripts/view.py $(if $(SERVED),--model $(SERVED))

test: install
	$(BIN)/pytest -q

# Minutes, on a quiet machine: Triton vs in-process ONNX Runtime, interleaved rounds -> docs/performance.md (+ .json)
bench: install
	$(BIN)/python scripts/bench_serving.py --out docs/performance.md

# ~30 s: 20,000 requests at concurrency 32 from 4 processes, ids and results checked, memory sampled
soak: install
	$(BIN)/python scripts/soak.py --requests 20000 --concurrency 32 --processes 4 --json docs/soak.json

# Minutes: the paper's analyses on the shipped model -> docs/results/ (figures, tables, results.json)
report: install
	$(BIN)/gatta-train report --ckpt $(MODEL) --data $(DATA) --out docs/results
	$(BIN)/gatta-train curves models/cifar10-toy-backbone.log.jsonl models/cifar10-toy-d16.log.jsonl \
		models/cifar10-toy-backbone-p50.log.jsonl docs/results/converged/head-p50.log.jsonl \
		docs/results/converged/backbone-cosine-seed1.log.jsonl docs/results/converged/head-cosine-seed1.log.jsonl \
		docs/results/converged/toy-wide-p50.log.jsonl \
		--out docs/results/training.png > docs/results/training.md

# Heavy: retrains the shipped default model (hours on 2 CPU cores, minutes on a GPU).
train-default: install
	bash scripts/train_default.sh $(DATA)

clean:
	rm -rf out model_repository .pytest_cache .cache
