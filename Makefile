# LiangHua — the two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install run fleet test chaos parity test-unit test-integration test-e2e lint fmt bench up down clean

help:
	@echo "make run     standalone platform with demo data at http://127.0.0.1:8000"
	@echo "make test    unit, integration and end-to-end tests (starts MariaDB/Redis/RabbitMQ if needed)"
	@echo "make fleet   every service as its own process against MariaDB, Redis and RabbitMQ"
	@echo "make chaos   fault tests: own MariaDB/Redis/RabbitMQ, faults injected under a stream of orders"
	@echo "make parity  paper replays of every example strategy through the platform, against run_backtest"
	@echo "make lint    ruff + mypy + import contracts;  make bench: benchmarks;  make up: docker compose"

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m lianghua.standalone

fleet: $(STAMP)
	bash scripts/backing-services.sh
	$(PY) -m lianghua.fleet

# Unit and integration tests on both cores (pytest-xdist, a file per worker at a time: each test keeps to its own
# databases, vhost and Redis keys), then the end-to-end tests one at a time (they start fleets of processes).
test: $(STAMP)
	bash scripts/backing-services.sh
	$(PY) -m pytest -q -n 2 --dist loadfile tests/unit tests/integration
	$(PY) -m pytest -q tests/e2e

# Fault tests (tests/chaos/): their own MariaDB, Redis and RabbitMQ node, never the machine's; about 3 minutes.
chaos: $(STAMP)
	$(PY) -m pytest -q -m chaos tests/chaos

# Paper replays of every example strategy through the whole platform, fill for fill against run_backtest (and one instance with its own fill rules); ~9 minutes.
parity: $(STAMP)
	$(PY) -m pytest -q -m "parity or not parity" tests/e2e/test_paper_replay.py

test-unit: $(STAMP)
	$(PY) -m pytest -q -n 2 tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	bash scripts/backing-services.sh
	$(PY) -m bench.order_path
	$(PY) -m bench.qmt_bridge
	$(PY) -m bench.order_load --clients 50
	$(PY) -m bench.risk_rules
	$(PY) -m bench.quotes_ingest
	$(PY) -m bench.sql_count
	$(PY) -m bench.bars_read
	$(PY) -m bench.engine
	$(PY) -m bench.engine --symbols 5000
	$(PY) -m bench.data_quality
	$(PY) -m bench.data_ingest
	$(PY) -m bench.data_ingest_tushare --symbols 5000 --days 250
	$(PY) -m bench.bars_bulk
	$(PY) -m bench.backtest_e2e
	$(PY) -m bench.grid --points 1000 --workers 1,2
	$(PY) -m bench.paper_replay
	$(PY) -m bench.bar_to_orders
	$(PY) -m bench.web_market

up:
	docker compose up -d --build

down:
	docker compose down

clean:
	rm -rf var/*.db var/*.db-wal var/*.db-shm .pytest_cache .ruff_cache .mypy_cache
