# Two commands do all set-up on a fresh machine:  `make train` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FASHION_DIR := /usr/share/datasets/fashion-mnist
# The recipe make train runs (a module of jaxcnn/configs/, docs/guides/recipes.md); TRAIN_ARGS: flags that override it.
RECIPE ?= lenet5
TRAIN_ARGS ?=

.PHONY: train test gradcheck system-packages install docs docs-system-packages

# The tests also run PyTorch (the bench's twins are checked to compute the models' functions): its CPU build,
# from PyTorch's CPU index where that can be reached, else whatever build the configured registry offers.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch>=2.4" --extra-index-url $(TORCH_CPU_INDEX) --retries 1 --timeout 20
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Debian packages, installed when missing: dataset-fashion-mnist (the genuine Fashion-MNIST IDX files, the offline
# default dataset) and libtcmalloc-minimal4 (the malloc that jaxcnn's commands run on, jaxcnn/host_memory.py).
system-packages:
	@missing=""; \
	[ -d $(FASHION_DIR) ] || missing="dataset-fashion-mnist"; \
	ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal.so.4 || missing="$$missing libtcmalloc-minimal4"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; \
	  else \
	    echo "no apt-get to install$$missing: point --data-dir or JAXCNN_DATA at a folder of Fashion-MNIST IDX files;"; \
	    echo "without tcmalloc jaxcnn runs on the system malloc (slower for large steps)"; \
	  fi; \
	fi

train: install system-packages
	$(PY) -m jaxcnn train --config $(RECIPE) $(TRAIN_ARGS)

test: install system-packages
	$(PY) -m pytest -n 2 --dist loadgroup tests

gradcheck: install
	$(PY) -m jaxcnn gradcheck

# The docs site (docs/README.md): Sphinx + MyST-NB with every notebook executed, warnings as errors, then every
# page opened in headless Chromium (Debian's chromium and chromium-driver, installed when missing).
$(VENV)/.docs-installed: $(VENV)/.installed docs/requirements.txt
	$(PY) -m pip install --quiet -r docs/requirements.txt
	touch $@

docs-system-packages:
	@if ! command -v chromedriver >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; \
	  else \
	    echo "no apt-get to install chromium and chromium-driver: docs/check_site.py needs them"; exit 1; \
	  fi; \
	fi

docs: $(VENV)/.docs-installed system-packages docs-system-packages
	rm -rf docs/_build/html
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	$(PY) docs/check_site.py docs/_build/html
