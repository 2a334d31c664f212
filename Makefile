# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
.PHONY: setup demo demo-down test unit lint bench clean catalogue source-data faults faults-e2e chart-test e2e-operator e2e demo-status control-plane

setup:
	scripts/setup.sh

demo: setup
	python3 -m carbontrack.devcluster demo

demo-down:
	python3 -m carbontrack.devcluster down

test: setup
	scripts/test.sh

unit:
	CARBONTRACK_SKIP_CLUSTER=1 scripts/setup.sh
	pytest --no-e2e

lint:
	ruff check .
	mypy

bench:
	python3 bench/run_all.py

clean:
	rm -rf .setup-stamp build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Rebuild packaged data from ../shared/data/raw (tests check the packaged files are reproduced byte for byte).
catalogue:
	python3 scripts/build_catalogue.py

source-data:
	python3 scripts/build_source_data.py

faults:
	pytest tests/unit/faults

faults-e2e:
	pytest --e2e tests/e2e/test_faults_operator.py

chart-test:
	pytest tests/unit/test_chart.py tests/unit/test_chart_rules.py tests/unit/test_chart_images.py

e2e-operator:
	pytest --e2e tests/e2e/test_operator.py

e2e:
	pytest --e2e tests/e2e

demo-status:
	python3 -m carbontrack.devcluster status

control-plane:
	scripts/build-control-plane.sh
