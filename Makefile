# vaxreport: the two commands of the README, and a few helpers.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DAY ?=
RECORDS ?= 2000

.PHONY: run test lint venv emulator bench airflow clean

$(BIN)/.installed: requirements.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# include/ and plugins/ on the venv's path, so `.venv/bin/python -m vaxreport` works anywhere
	printf '%s\n' "$(CURDIR)/include" "$(CURDIR)/plugins" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/vaxreport-paths.pth"
	touch $@

venv: $(BIN)/.installed

## run: the daily pipeline end to end on the embedded default (SQLite source and ledger, local emulator)
run: venv
	DAY=$(DAY) RECORDS=$(RECORDS) scripts/run_daily.sh

## test: the whole suite (ruff, unit, integration against the emulator and real databases, DAG runs)
test: venv
	scripts/test.sh

## bench: throughput and memory on the machine's PostgreSQL (prints a table; N=100,000 and 1,000,000)
bench: venv
	source scripts/env.sh && $(BIN)/python -m vaxreport bench $(BENCH_ARGS)

## airflow: api-server, scheduler, dag-processor and triggerer with the emulator; prints the UI address and login
airflow: venv
	source scripts/env.sh && mkdir -p var && $(BIN)/python -m vaxreport airflow $(AIRFLOW_ARGS)

lint: venv
	$(BIN)/ruff check .

## emulator: the register emulator in the foreground on 127.0.0.1:8089, state in var/register.sqlite
emulator: venv
	mkdir -p var && PYTHONPATH=include $(BIN)/python -m nvr_emulator --db var/register.sqlite

clean:
	rm -rf var test-artifacts
