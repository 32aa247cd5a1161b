# The only entry points a user needs: `make demo` and `make test`.
# Both do all set-up themselves and are idempotent.
VENV    ?= .venv
PYTHON  ?= python3
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed-stamp
# Debian packages the tests start as real servers or use as foreign peers
# (nginx-light: a reverse proxy with a body limit in front of victoria-metrics; chromium: the
# headless browser the dashboard's tests drive; nodejs: runs Eclipse Tahu's Sparkplug decoder, tests/node).
DEB_PKGS = mbpoll mosquitto victoria-metrics nginx-light chromium nodejs
NODE_PEERS = tests/node/node_modules/.installed-stamp

.PHONY: demo test lint system-deps venv docs clean kit-stress node-peers fault-matrix sigkill soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
	touch $@

venv: $(STAMP)

system-deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The npm packages the tests check linegw against (tests/node/package.json, versions locked).
$(NODE_PEERS): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $@

node-peers: system-deps $(NODE_PEERS)

demo: $(STAMP)
	$(BIN)/linegw demo

# Lint and types first: a finding fails `make test` before the suite runs.
LINT_PATHS = gateway interface_spec simulators tests bench deploy

lint: $(STAMP)
	$(BIN)/ruff check --quiet $(LINT_PATHS)
	$(BIN)/mypy

test: $(STAMP) system-deps node-peers lint
	$(BIN)/pytest

docs: $(STAMP)
	$(BIN)/linegw spec docs

# The conformance kit against every conforming simulator, 20 whole runs each, six at a time (as the suite runs them), with a CPU burner
# alongside: prints the false failures and their count (0, or exit 1). About 5 minutes (60 runs took 149 s); the suite runs a smoke.
kit-stress: $(STAMP)
	$(BIN)/python -m tests.conformance.kit_stress --runs 20

fault-matrix: $(STAMP)
	$(BIN)/python -m tests.reliability.matrix --out bench/results/fault_matrix.json

sigkill: $(STAMP) system-deps
	$(BIN)/python -m tests.reliability.sigkill --kills 10 --out bench/results/sigkill.json

soak: $(STAMP)
	$(BIN)/python -m tests.reliability.soak --minutes 30 --out bench/results/soak.json --chart bench/results/soak.png

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
