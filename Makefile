# hiclr's two set-up commands (see README):
#   make demo   fresh .venv, install, run the whole pipeline on the embedded synthetic dataset
#   make test   fresh .venv, install, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo
TORCH  := torch==2.14.1 torchvision==0.29.1
PIPC   := $(BIN)/pip install -c requirements/constraints.txt

.PHONY: demo test backends bench clean-demo system

# System libraries (open3d's libusb): installed when run as root with apt-get, else the command is printed.
system:
	@bash scripts/check_system.sh

$(VENV)/.installed: pyproject.toml requirements/constraints.txt requirements/nuscenes-devkit-deps.txt
	@bash scripts/check_system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(PIPC) -q -e '.[dev]'
	$(PIPC) -q -r requirements/nuscenes-devkit-deps.txt
	$(PIPC) -q --no-deps nuscenes-devkit==1.2.0
	@touch $@

demo: system $(VENV)/.installed
	bash scripts/demo.sh $(BIN)/hiclr $(DEMO)

test: system $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "not slow and not backend"

# Optional sparse backends built from source, then the backend-equivalence tests against them:
# MinkowskiEngine 0.5.4 (CPU-only here; ~4-10 min) and torchsparse 1.4.0 from the vendored tree in
# ../shared/vendor (~4-8 min on 2 cores). Both cache their wheels in wheels/; reruns take seconds.
# spconv 2.3.8's CPU wheel (seconds) for its forward: its CPU backward needs CUDA. -rs prints why
# each skipped test skipped (a backend's missing CPU backward), so CI's log says it.
backends: $(VENV)/.installed
	bash scripts/build_minkowski.sh $(VENV)
	bash scripts/build_torchsparse.sh $(VENV)
	$(BIN)/pip install -c requirements/constraints.txt -q spconv==2.3.8
	$(BIN)/python -m pytest -q -rs -m backend

clean-demo:
	rm -rf $(DEMO)
