# The two commands of the README, and the pieces they are made of.
MODE ?= reload
PY := .venv/bin/python

.PHONY: demo test bootstrap lint typecheck pytest bench bench-quick bench-scale bench-scale-quick clean

demo: bootstrap  ## set up, then run the agent against the dev Consul and a real nginx
	$(PY) scripts/demo.py --mode $(MODE) $(if $(SCENARIO),--scenario $(SCENARIO))

test: bootstrap lint typecheck pytest  ## set up, then run the whole suite (what CI runs)

bootstrap:
	@bash scripts/bootstrap.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck:
	.venv/bin/mypy

pytest:
	.venv/bin/pytest -q

bench: bootstrap  ## reload vs api, default run (~5 minutes)
	$(PY) -m bench.run

bench-quick: bootstrap
	$(PY) -m bench.run --quick

bench-scale: bootstrap  ## 100, 500, 2,000 services on 16 Consul connections, both modes (~15 minutes)
	$(PY) -m bench.scale

bench-scale-quick: bootstrap
	$(PY) -m bench.scale --quick

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache .hypothesis

# Install on this host from this checkout (Debian: a venv in /opt/syncer, PEP 668 respected).
# PREFIX=/some/dir installs into a throwaway root instead. See docs/install.md.
.PHONY: install uninstall
install:
	bash scripts/install.sh

uninstall:
	bash scripts/uninstall.sh
