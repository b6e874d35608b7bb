# The commands a person types. Every target that needs Python creates .venv first when it is missing.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The shared real data lives beside the project; code finds it through MEDLENS_DATA only.
ifneq ($(wildcard ../shared/data),)
export MEDLENS_DATA ?= $(abspath ../shared/data)
endif
DEMO_DIR ?= demo
DEMO_BUDGET ?= 3m

.PHONY: setup system-packages viewer demo test lint bench clean

$(BIN)/medlens: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/medlens

# Debian packages, installed when missing: the tools the tests check against or run (dcm2niix, dciodvfy from
# dicom3tools, dcmtk's storescu/echoscu), the Orthanc PACS and its DICOMweb plugin, the browser the viewer is tested
# in (chromium, chromium-driver), the database server the audit tests run on (postgresql: initdb lives in
# /usr/lib/postgresql/VERSION/bin), and node with npm to build the viewer.
system-packages:
	@missing=""; for c in dcm2niix:dcm2niix dcmdump:dcmtk storescu:dcmtk dciodvfy:dicom3tools \
	  /usr/sbin/Orthanc:orthanc /usr/share/orthanc/plugins/libOrthancDicomWeb.so:orthanc-dicomweb \
	  chromium:chromium chromedriver:chromium-driver node:nodejs npm:npm; do \
	  { command -v $${c%%:*} >/dev/null || test -e $${c%%:*}; } || missing="$$missing $${c##*:}"; done; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The web viewer of 'medlens serve': NiiVue from npm (versions pinned in viewer/package-lock.json), bundled by esbuild
# into one static file the service serves. Built here, not committed.
VIEWER_JS := src/medlens/serve/static/viewer.js
$(VIEWER_JS): viewer/package.json viewer/package-lock.json viewer/src/main.js | system-packages
	cd viewer && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent

viewer: $(VIEWER_JS)

setup: $(BIN)/medlens system-packages viewer

demo: $(BIN)/medlens
	@test -n "$$MEDLENS_DATA" || { echo "MEDLENS_DATA is not set and ../shared/data does not exist"; exit 1; }
	rm -rf $(DEMO_DIR)
	$(BIN)/medlens import medmnist $$MEDLENS_DATA/medmnist/pneumoniamnist.npz --out $(DEMO_DIR)/dataset
	$(BIN)/medlens plan $(DEMO_DIR)/dataset
	$(BIN)/medlens train $(DEMO_DIR)/dataset --out $(DEMO_DIR)/run --budget $(DEMO_BUDGET)
	$(BIN)/medlens evaluate $(DEMO_DIR)/run --split test --out $(DEMO_DIR)/eval
	$(BIN)/medlens predict $(DEMO_DIR)/run $(DEMO_DIR)/dataset/images/test_0000?.png --out $(DEMO_DIR)/predictions \
	  --report --explain
	@echo; echo "predictions:     $$(pwd)/$(DEMO_DIR)/predictions/predictions.csv"
	@echo "evaluation:      $$(pwd)/$(DEMO_DIR)/eval/report.html"
	@echo "clinical report: $$(pwd)/$(DEMO_DIR)/predictions/reports/test_00000.en.txt (explanation beside it)"

# pytest exits 5 when it collects no test: say so plainly instead of failing with a bare make error.
test: setup
	@$(BIN)/python -m pytest -n 2 --dist loadgroup -q; s=$$?; \
	if [ $$s = 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$s

lint: $(BIN)/medlens
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(BIN)/medlens
	$(BIN)/python benchmarks/classification.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/deid.py --files 10000 --workers 2
	$(BIN)/python benchmarks/serve.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache viewer/node_modules $(VIEWER_JS)
