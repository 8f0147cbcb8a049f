# A fresh clone needs only `make demo` or `make test`: both create .venv from the lock first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

.PHONY: install demo lint docs test serve ui bench bench-quick bench-big clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade "pip>=24"
	$(BIN)/python -m pip install -qq -r requirements.lock
	$(BIN)/python -m pip install -qq --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install
	$(BIN)/tiering demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(MKDOCS)

# The docs site, built strictly so that a broken link or anchor between pages fails (not --quiet: it hides
# the warnings --strict counts); site/ is git-ignored.
docs: install
	$(MKDOCS)

test: install lint
	$(BIN)/python -m pytest -n 2 --dist loadfile --timeout 600

serve: install
	$(BIN)/tiering serve --host 127.0.0.1 --port 3000

ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///models/mlflow.db --host 127.0.0.1 --port 5000

bench: install
	$(BIN)/python -m bench.run

bench-quick: install
	$(BIN)/python -m bench.run --quick

# The long benchmarks, not in `make bench`: Spark training at 300,000 accounts (~62 million events) on local[2],
# and the sample bound (all rows against model.max_training_rows) at 100,000 accounts.
bench-big: install
	$(BIN)/python -m bench.spark_train_bench --accounts 300000
	$(BIN)/python -m bench.sample_bench --accounts 100000 --max-rows 200000

clean:
	rm -rf $(VENV) models/mlflow.db models/artifacts demo-output site
