# Two commands matter: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test test-load lint format bench eval configmap check clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

# What `make run` needs: watcher and its dependencies, not the test tools (on a small server).
RUN_STAMP := $(VENV)/.run-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

$(RUN_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@rm -f $(VENV)/.run-*
	@touch $(RUN_STAMP)

## run: install, apply migrations, start the daemon on SQLite with ./sources.yaml
run: $(RUN_STAMP)
	$(BIN)/watcher check
	$(BIN)/watcher db upgrade
	$(BIN)/watcher run

# The suite runs in WORKERS processes (pytest-xdist), more than the two cores: the tests that
# start processes spend most of their time waiting on them. Each worker is handed two tests at a
# time (--maxschedchunk 2), the process-starting ones first (tests/conftest.py), so the long
# ones spread over the workers instead of piling up in one worker's first batch.
WORKERS ?= 4
PYTEST := $(BIN)/python -m pytest -q -n $(WORKERS) --maxschedchunk 2

## test: install the test extras and run every check and the whole suite
test: $(STAMP) lint
	$(PYTEST)

## test-load: the process-starting tests with four CPU-burning processes alongside, three
## times over (not in CI: it shows whether the suite depends on the machine's speed)
test-load: $(STAMP)
	for run in 1 2 3; do $(BIN)/python -m tests.busy --burners 4 -- \
	  $(PYTEST) -p no:randomly -m e2e || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check watcher tests benchmarks migrations
	$(BIN)/ruff format --check watcher tests benchmarks migrations
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format watcher tests benchmarks migrations
	$(BIN)/ruff check --fix watcher tests benchmarks migrations

bench: $(STAMP)
	$(BIN)/python benchmarks/poll.py
	$(BIN)/python benchmarks/match.py
	$(BIN)/python benchmarks/stories.py
	$(BIN)/python benchmarks/daemon.py latency
	$(BIN)/python benchmarks/daemon.py memory --cycles 300
	$(BIN)/python benchmarks/daemon.py cpu
	$(BIN)/python benchmarks/outages.py kill
	$(BIN)/python benchmarks/outages.py smtp
	$(BIN)/python benchmarks/hostile.py
	$(BIN)/python benchmarks/web.py
	$(BIN)/python benchmarks/evidence.py
	$(BIN)/python benchmarks/prune.py
	$(BIN)/python benchmarks/urlwatch.py

## configmap: copy sources.yaml into deploy/k8s/configmap.yaml (a test checks they agree)
configmap: $(STAMP)
	$(BIN)/python -c "import pathlib, re; p = pathlib.Path('deploy/k8s/configmap.yaml'); \
	head = p.read_text().split('  sources.yaml: |\n')[0] + '  sources.yaml: |\n'; \
	body = ''.join(('    ' + l) if l.strip() else l for l in pathlib.Path('sources.yaml').read_text().splitlines(True)); \
	p.write_text(head + body)"

## eval: score the rules and stories on the development set, when it is beside the project
eval: $(STAMP)
	@if [ -f ../shared/eval/dev.jsonl ]; then \
	  $(BIN)/watcher eval ../shared/eval/dev.jsonl --stories; \
	else echo "no ../shared/eval/dev.jsonl here: run watcher eval FILE on a labelled file"; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dist build
